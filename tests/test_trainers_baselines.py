"""ZeroshotCLIP / CoOp baselines and the upstream config surface."""

import json
import os

import pytest

import train
from clip.testing import save_state_dict, tiny_vit_state_dict
from datasets.toy_shapes import generate_toy_shapes

UPSTREAM_YAMLS = [
    "configs/trainers/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
    "configs/trainers/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets.yaml",
    "configs/trainers/PromptSRC/vit_l14_c2_ep20_batch8_4+4ctx.yaml",
]


@pytest.mark.parametrize("yaml", UPSTREAM_YAMLS)
def test_upstream_yamls_merge_with_upstream_opts(repo_root, yaml):
    cfg = train.setup_cfg(
        train.build_parser().parse_args(
            [
                "--config-file",
                os.path.join(repo_root, yaml),
                "--trainer",
                "PromptKD",
                "TRAINER.MODAL",
                "cross",
                "TRAINER.PROMPTKD.TEMPERATURE",
                "1.0",
                "TRAINER.PROMPTKD.KD_WEIGHT",
                "1000.0",
                "DATASET.SUBSAMPLE_CLASSES",
                "base",
                "TRAINER.COOP.N_CTX",
                "4",
            ]
        )
    )
    assert cfg.TRAINER.PROMPTKD.TEACHER_NAME == "ViT-L/14"
    assert cfg.TRAINER.PROMPTKD.KD_WEIGHT == 1000.0
    if "cross" in yaml:
        assert cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_VISION == 3
    if "PromptSRC" in yaml:
        assert (cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT, cfg.TRAINER.PROMPTSRC.GPA_MEAN) == (25, 15)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("baselines")
    root = str(base / "data")
    generate_toy_shapes(root, n_train=1, n_val=1, n_test=1)
    model = save_state_dict(tiny_vit_state_dict(seed=4), base / "clip.pt")
    common = [
        "--root",
        root,
        "--seed",
        "1",
        "DATASET.NAME",
        "ToyShapes",
        "INPUT.SIZE",
        "(16, 16)",
        "INPUT.TRANSFORMS",
        "['normalize']",
        "DATALOADER.NUM_WORKERS",
        "0",
        "MODEL.BACKBONE.NAME",
        model,
        "DATALOADER.TRAIN_X.BATCH_SIZE",
        "8",
        "OPTIM.NAME",
        "sgd",
        "OPTIM.LR",
        "0.01",
        "OPTIM.MAX_EPOCH",
        "1",
    ]
    return base, common


def test_zeroshot_clip_base_new_results(toy):
    base, common = toy
    out = str(base / "zs")
    assert (
        train.main(
            [
                "--trainer",
                "ZeroshotCLIP",
                "--output-dir",
                out,
                "--eval-only",
                *common,
                "DATASET.SUBSAMPLE_CLASSES",
                "base",
            ]
        )
        == 0
    )
    res = json.load(open(os.path.join(out, "results.json")))
    assert {"base", "new", "hm"} <= set(res) and res["epoch"] == 0
    out2 = str(base / "zs_all")
    assert (
        train.main(["--trainer", "ZeroshotCLIP", "--output-dir", out2, "--eval-only", *common]) == 0
    )
    assert "accuracy" in json.load(open(os.path.join(out2, "results.json")))


def test_coop_trains_and_transfers_to_new_classes(toy):
    base, common = toy
    out = str(base / "coop")
    assert (
        train.main(
            [
                "--trainer",
                "CoOp",
                "--output-dir",
                out,
                *common,
                "DATASET.SUBSAMPLE_CLASSES",
                "base",
                "DATASET.NUM_SHOTS",
                "1",
                "TRAINER.COOP.N_CTX",
                "4",
                "TRAINER.COOP.PREC",
                "fp32",
            ]
        )
        == 0
    )
    assert os.path.isfile(os.path.join(out, "prompt_learner", "model.pth.tar-1"))
    res = json.load(open(os.path.join(out, "results.json")))
    assert {"base", "new", "hm", "config_hash"} <= set(res)
    ev = str(base / "coop_eval")
    assert (
        train.main(
            [
                "--trainer",
                "CoOp",
                "--output-dir",
                ev,
                "--eval-only",
                "--model-dir",
                out,
                "--load-epoch",
                "1",
                *common,
                "DATASET.SUBSAMPLE_CLASSES",
                "new",
                "TRAINER.COOP.N_CTX",
                "4",
                "TRAINER.COOP.PREC",
                "fp32",
            ]
        )
        == 0
    )
    res2 = json.load(open(os.path.join(ev, "results.json")))
    assert (res2["base"], res2["new"]) == (res["base"], res["new"])
    assert res2["config_hash"] != res["config_hash"]  # SUBSAMPLE_CLASSES differs
