"""Bad input through train.main(): exit 2, one clear stderr message, no half-written output."""

import pytest

import train
from tests.test_train_helpers import make_image_folder, write_trainer_yaml


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "data"
    make_image_folder(str(root), n_train=2, n_val=1, n_test=1)
    cfg_file = write_trainer_yaml(tmp_path / "toy.yaml", max_epoch=1)
    return str(root), cfg_file, tmp_path / "out"


def _base(root, cfg_file, out):
    return [
        "--root",
        root,
        "--trainer",
        "ToyCoOp",
        "--config-file",
        cfg_file,
        "--output-dir",
        str(out),
    ]


def _run(capsys, argv):
    rc = train.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


CASES = {
    "missing config file": (
        lambda r, c, o: ["--root", r, "--trainer", "ToyCoOp", "--config-file", c + ".nope"],
        ["Config file not found", "toy.yaml.nope"],
    ),
    "unknown key": (
        lambda r, c, o: _base(r, c, o) + ["DATASET.NAME", "EngineToyData", "OPTIM.LRR", "0.1"],
        ["OPTIM.LRR", "OPTIM.LR"],
    ),
    "wrong type": (
        lambda r, c, o: _base(r, c, o) + ["DATASET.NAME", "EngineToyData", "OPTIM.LR", "1"],
        ["OPTIM.LR", "float"],
    ),
    "unknown trainer": (
        lambda r, c, o: [
            "--root",
            r,
            "--trainer",
            "ToyCoop",
            "--config-file",
            c,
            "--output-dir",
            str(o),
            "DATASET.NAME",
            "EngineToyData",
        ],
        ["ToyCoop", "ToyCoOp", "valid choices"],
    ),
    "unknown dataset": (
        lambda r, c, o: _base(r, c, o) + ["DATASET.NAME", "EngineToyDat"],
        ["EngineToyDat", "EngineToyData", "valid choices"],
    ),
    "missing root": (
        lambda r, c, o: [
            "--root",
            r + "_missing",
            "--trainer",
            "ToyCoOp",
            "--config-file",
            c,
            "--output-dir",
            str(o),
            "DATASET.NAME",
            "EngineToyData",
        ],
        ["data_missing", "--root"],
    ),
    "missing dataset dir": (
        lambda r, c, o: [
            "--root",
            str(o.parent),
            "--trainer",
            "ToyCoOp",
            "--config-file",
            c,
            "--output-dir",
            str(o),
            "DATASET.NAME",
            "EngineToyData",
        ],
        ["not found", "engine_toy", "DATASET.ROOT"],
    ),
    "missing model dir": (
        lambda r, c, o: (
            _base(r, c, o)
            + ["--eval-only", "--model-dir", str(o) + "_none", "DATASET.NAME", "EngineToyData"]
        ),
        ["--model-dir", "out_none"],
    ),
    "missing epoch file": (
        lambda r, c, o: (
            _base(r, c, o)
            + [
                "--eval-only",
                "--model-dir",
                r,
                "--load-epoch",
                "9",
                "DATASET.NAME",
                "EngineToyData",
            ]
        ),
        ["model.pth.tar-9"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, setup, capsys):
    root, cfg_file, out = setup
    make_argv, needles = CASES[case]
    rc, err = _run(capsys, make_argv(root, cfg_file, out))
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err  # one message, no traceback
    assert lines[0].startswith("train.py: error:")
    for needle in needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_failure_keeps_preexisting_output_dir(setup, capsys):
    root, cfg_file, out = setup
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = [
        "--root",
        str(out.parent),
        "--trainer",
        "ToyCoOp",
        "--config-file",
        cfg_file,
        "--output-dir",
        str(out),
        "DATASET.NAME",
        "EngineToyData",
    ]
    rc, err = _run(capsys, argv)
    assert rc == 2 and "engine_toy" in err
    assert (out / "keep.txt").read_text() == "x"


def test_help_and_argparse_errors(capsys):
    assert train.main(["--help"]) == 0
    assert train.main(["--seed", "abc"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_seed_zero_is_a_seed(tmp_path):
    args = train.build_parser().parse_args(["--seed", "0"])
    cfg = train.get_cfg_default()
    train.reset_cfg(cfg, args)
    assert cfg.SEED == 0
    args = train.build_parser().parse_args([])
    cfg = train.get_cfg_default()
    train.reset_cfg(cfg, args)
    assert cfg.SEED == -1
