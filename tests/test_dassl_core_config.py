"""Config defaults (spec 3.3), yacs decoding and the ConfigError messages."""

import pytest
from yacs.config import CfgNode

from dassl.config import ConfigError, clean_cfg, get_cfg_default, merge_cfg_file, merge_cfg_list


def test_defaults_are_a_fresh_yacs_tree():
    cfg = get_cfg_default()
    assert isinstance(cfg, CfgNode)
    cfg.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003
    assert cfg.VERSION == 1 and cfg.OUTPUT_DIR == "./output" and cfg.SEED == -1
    assert cfg.INPUT.SIZE == (224, 224) and cfg.INPUT.TRANSFORMS == ()
    assert cfg.INPUT.PIXEL_MEAN == [0.485, 0.456, 0.406]
    assert cfg.DATASET.NUM_SHOTS == -1 and cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    assert cfg.DATALOADER.TRAIN_X.N_INS == 16 and cfg.DATALOADER.TEST.SAMPLER == "SequentialSampler"
    assert cfg.OPTIM.SGD_DAMPNING == 0 and cfg.OPTIM.STEPSIZE == (-1,)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and cfg.OPTIM.WARMUP_RECOUNT is True
    assert cfg.TEST.FINAL_MODEL == "last_step" and cfg.TEST.EVALUATOR == "Classification"
    assert cfg.TRAIN.COUNT_ITER == "train_x"
    assert cfg.TRAINER.FIXMATCH.CONF_THRE == 0.95 and cfg.TRAINER.DDAIG.G_ARCH == ""
    assert cfg.TRAINER.CDAC.RAMPUP_ITRS == 1000
    assert type(cfg.OPTIM.WEIGHT_DECAY) is float and type(cfg.MODEL.HEAD.DROPOUT) is float


def test_clean_cfg_keeps_name_and_trainer_node():
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CfgNode()
    cfg.TRAINER.COOP.N_CTX = 16
    clean_cfg(cfg, "CoOp")
    assert sorted(cfg.TRAINER.keys()) == ["COOP", "NAME"]


def test_yaml_values_decode_to_float_and_tuple(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("INPUT:\n  SIZE: (32, 32)\nOPTIM:\n  WARMUP_CONS_LR: 1e-6\n  LR: 0.002\n")
    cfg = get_cfg_default()
    merge_cfg_file(cfg, str(f))
    assert cfg.INPUT.SIZE == (32, 32) and isinstance(cfg.INPUT.SIZE, tuple)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-6 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)


def test_unknown_key_in_file_names_file_key_and_closest(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("OPTIM:\n  MAX_EPOCHS: 5\n")
    with pytest.raises(ConfigError) as ei:
        merge_cfg_file(get_cfg_default(), str(f))
    msg = str(ei.value)
    assert str(f) in msg and "OPTIM.MAX_EPOCHS" in msg and "Did you mean OPTIM.MAX_EPOCH?" in msg


def test_int_for_float_rejected_with_fix(tmp_path):
    with pytest.raises(ConfigError) as ei:
        merge_cfg_list(get_cfg_default(), ["OPTIM.LR", "1"])
    assert "OPTIM.LR expects float, got int 1: write 1.0" in str(ei.value)
    f = tmp_path / "c.yaml"
    f.write_text("OPTIM:\n  LR: 2\n")
    with pytest.raises(ConfigError) as ei:
        merge_cfg_file(get_cfg_default(), str(f))
    assert str(f) in str(ei.value) and "OPTIM.LR expects float, got int 2: write 2.0" in str(
        ei.value
    )
    cfg = get_cfg_default()
    merge_cfg_list(cfg, ["OPTIM.LR", "1.0"])
    assert cfg.OPTIM.LR == 1.0


def test_unknown_and_malformed_opts():
    with pytest.raises(ConfigError, match=r"DATASET\.NUM_SHOT\b.*Did you mean DATASET\.NUM_SHOTS"):
        merge_cfg_list(get_cfg_default(), ["DATASET.NUM_SHOT", "4"])
    with pytest.raises(ConfigError, match="odd number"):
        merge_cfg_list(get_cfg_default(), ["DATASET.NUM_SHOTS"])


def test_missing_file_and_merge_order(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        merge_cfg_file(get_cfg_default(), str(tmp_path / "nope.yaml"))
    f = tmp_path / "c.yaml"
    f.write_text("DATASET:\n  NUM_SHOTS: 4\n  NAME: Caltech101\n")
    cfg = get_cfg_default()
    merge_cfg_file(cfg, str(f))
    merge_cfg_list(cfg, ["DATASET.NUM_SHOTS", "16"])
    assert cfg.DATASET.NUM_SHOTS == 16 and cfg.DATASET.NAME == "Caltech101"
    cfg.freeze()
    with pytest.raises(ConfigError, match="frozen"):
        merge_cfg_list(cfg, ["DATASET.NUM_SHOTS", "2"])
