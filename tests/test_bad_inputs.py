"""The bad-input battery: every mistake a user can make ends with one message naming the file
or key and the fix, a non-zero exit and nothing half-written (issue 13).

``TABLE`` is the single list of cases; README's "Troubleshooting" section is generated from it
by ``tools/troubleshooting.py`` (a test below keeps the two in sync). Each case runs through
``train.main`` (the exit status a shell sees) unless it is about a library call.
The second half holds the regression tests of the defects the issue lists.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from clip.testing import save_state_dict, tiny_vit_state_dict
from dassl.engine import TRAINER_REGISTRY, build_trainer, checkpointer
from dassl.engine import distributed as dist_utils
from dassl.engine.trainer import NonFiniteLossError, TrainerBase
from dassl.utils import LOCK_FILE, UserInputError, load_checkpoint
from dassl.utils.tools import read_image
from tests.fake_datasets import make_eurosat
from tests.test_train_helpers import ToyCoOp, make_image_folder, write_trainer_yaml
from trainers.class_vectors import load_class_vectors, save_class_vectors, sha256_file

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BadInput:
    """One row of the battery and of README's troubleshooting table."""

    id: str
    input: str  # what the user did
    message: str  # a fragment of the one-line message (what they see)
    fix: str  # what to do
    exit_code: int = 2  # 0: handled (converted / rebuilt) with at most a warning


TABLE = [
    BadInput("missing_image", "an image listed by the dataset is missing", "Image file not found",
             "check DATASET.ROOT (--root) and the split file; re-extract the images"),
    BadInput("empty_image", "an image file is empty (0 bytes)", "the file is empty",
             "re-copy or re-download the file named in the message"),
    BadInput("corrupt_image", "an image file is corrupt or not an image",
             "corrupt or unsupported image", "re-copy or re-download the file named"),
    BadInput("odd_image_modes", "CMYK, 16-bit, palette or grayscale images", "",
             "nothing: they are converted to 8-bit RGB", exit_code=0),
    BadInput("missing_root", "the dataset root does not exist", "--root",
             "create it or point --root / DATASET.ROOT at the folder holding the datasets"),
    BadInput("split_json_malformed", "the split file (split_zhou_*.json) is not valid JSON",
             "is not valid JSON", "delete it to rebuild it from the annotations, or download it"),
    BadInput("split_json_missing_files", "the split file lists images that do not exist",
             "listed in the 'train' split of", "check the data root; re-extract the images"),
    BadInput("fewshot_cache_other_root", "a few-shot cache written under another data root",
             "remapped to the current folder", "nothing (paths are remapped, or the cache is "
             "rebuilt); delete split_fewshot/ to rebuild it", exit_code=0),
    BadInput("unknown_dataset", "an unknown dataset name", 'Did you mean "EngineToyData"?',
             "use one of the names listed (DATASET.NAME in the dataset config)"),
    BadInput("unknown_trainer", "an unknown trainer name", 'Did you mean "ToyCoOp"?',
             "use one of the names listed (--trainer)"),
    BadInput("unknown_backbone", "an unknown CLIP backbone", "Model ViT-B/61 not found",
             "MODEL.BACKBONE.NAME: a listed CLIP name or the path of a CLIP checkpoint"),
    BadInput("config_key_typo", "a config key with a typo", "Did you mean OPTIM.LR?",
             "use the suggested key"),
    BadInput("int_for_float", "an int given for a float key (OPTIM.LR 1)",
             "OPTIM.LR expects float, got int 1: write 1.0", "write the value as a float"),
    BadInput("input_size_vs_backbone", "INPUT.SIZE not matching the backbone's resolution",
             "does not match the CLIP input", "set INPUT.SIZE to the backbone's resolution"),
    BadInput("num_shots_too_large", "DATASET.NUM_SHOTS larger than the smallest class",
             "DATASET.NUM_SHOTS 16 is larger than the smallest class",
             "lower DATASET.NUM_SHOTS to the number given"),
    BadInput("class_vectors_other_dataset", "a class-vector file of another dataset",
             "do not match the dataset's class list", "export vectors for this dataset "
             "(tools/export_class_vectors.py) and set TRAINER.PROMPTKD.CLASS_VECTORS"),
    BadInput("class_vectors_class_order", "a class-vector file in another class order",
             "first mismatch at index 0", "re-export the vectors for this dataset"),
    BadInput("class_vectors_dimension", "a class-vector file of another dimension",
             "have dimension 24 but the model expects 48",
             "use the vectors of the teacher you distil from"),
    BadInput("class_vectors_truncated", "a truncated class-vector file", "is truncated or corrupt",
             "re-create it: rerun the teacher or tools/export_class_vectors.py"),
    BadInput("teacher_checkpoint_other_depth", "a teacher checkpoint of another prompt "
             "depth/width", "does not match the model built from the config",
             "use the config the teacher was trained with (prompt depth/length, backbone)"),
    BadInput("student_checkpoint_other_run", "--eval-only with a student checkpoint of another "
             "run", "its weights do not fit the model built from this config",
             "point --model-dir at a run made with the same config"),
    BadInput("load_epoch_missing", "--load-epoch of an epoch that was not saved",
             "epoch 9 was not saved (epochs saved in", "pass one of the epochs listed"),
    BadInput("output_dir_not_writable", "an output directory that cannot be written",
             "is not writable", "choose a writable --output-dir or fix its permissions"),
    BadInput("disk_full", "the disk fills up while a checkpoint is saved", "the disk is full",
             "free space or choose another --output-dir; the previous checkpoint is intact"),
    BadInput("output_dir_in_use", "a second run into the output directory of a live run",
             "is in use by another run", "wait for it to finish or use another --output-dir"),
    BadInput("ranks_disagree", "ranks of a distributed run started with different configs",
             "the ranks of this distributed run disagree on the config: OPTIM.LR",
             "start every rank with the same config files and opts"),
    BadInput("checkpoint_runs_code", "a checkpoint whose pickle would run code (os.system)",
             "refused: the file references", "do not use it; get the file from a trusted source"),
    BadInput("yaml_runs_code", "a config file with a python/object YAML tag", "invalid YAML",
             "remove the tag; configs are plain YAML (loaded with safe_load)"),
]  # fmt: skip


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_inputs")
    root = base / "data"
    make_image_folder(str(root), n_train=2, n_val=1, n_test=1)
    cfg = write_trainer_yaml(base / "toy.yaml", max_epoch=1)
    clip_file = save_state_dict(
        tiny_vit_state_dict(embed_dim=48, width=64, seed=1), base / "clip.pt"
    )
    names = [f"class_{i}" for i in range(4)]
    good_cv = base / "cv_good.safetensors"
    save_class_vectors(
        str(good_cv), torch.randn(4, 48), names, base_classes=range(0, 2),
        new_classes=range(2, 4), dataset="EngineToyData",
    )  # fmt: skip
    return {"base": base, "root": str(root), "cfg": cfg, "clip": clip_file, "cv": good_cv}


def toycoop(world, out, *opts):
    return [
        "--root", world["root"], "--trainer", "ToyCoOp", "--config-file", world["cfg"],
        "--output-dir", str(out), "DATASET.NAME", "EngineToyData", *opts,
    ]  # fmt: skip


def student(world, out, *opts, eval_only=True):
    flags = ["--eval-only"] if eval_only else []
    return [
        "--root", world["root"], "--trainer", "PromptKDStudent", "--config-file", world["cfg"],
        "--output-dir", str(out), *flags, "DATASET.NAME", "EngineToyData",
        "MODEL.BACKBONE.NAME", world["clip"], "INPUT.SIZE", "(16, 16)", "TRAINER.MODAL", "cross",
        "TRAINER.PROMPTKD.N_CTX_VISION", "2", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "1",
        *opts,
    ]  # fmt: skip


def ivlp(world, out, *opts):
    return [
        "--root", world["root"], "--trainer", "PromptKDTeacher", "--config-file", world["cfg"],
        "--output-dir", str(out), "DATASET.NAME", "EngineToyData",
        "MODEL.BACKBONE.NAME", world["clip"], "INPUT.SIZE", "(16, 16)",
        "TRAINER.PROMPTSRC.N_CTX_TEXT", "2", "TRAINER.PROMPTSRC.N_CTX_VISION", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "1", "TRAINER.PROMPTSRC.CTX_INIT", "", *opts,
    ]  # fmt: skip


def copy_data(world, tmp_path) -> str:
    root = tmp_path / "data"
    shutil.copytree(world["root"], root)
    return str(root)


def main(capsys, argv) -> tuple[int, str]:
    rc = train.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


# ------------------------------------------------------------------------------- runners
# Each returns (exit status, stderr); ``tmp_path / "out"`` is the output directory.


def _image_case(world, tmp_path, capsys, write) -> tuple[int, str]:
    root = copy_data(world, tmp_path)
    write(os.path.join(root, "engine_toy", "train", "class_1"))
    # batch size 1: no image is dropped by drop_last, so every training image is read
    argv = toycoop(world, tmp_path / "out", "DATALOADER.TRAIN_X.BATCH_SIZE", "1")
    argv[1] = root
    return main(capsys, argv)


def run_missing_image(world, tmp_path, capsys):
    def write(d):  # listed by the directory scan, gone when read
        os.symlink(os.path.join(d, "nowhere.png"), os.path.join(d, "9.png"))

    return _image_case(world, tmp_path, capsys, write)


def run_empty_image(world, tmp_path, capsys):
    return _image_case(world, tmp_path, capsys, lambda d: open(os.path.join(d, "9.png"), "wb"))


def run_corrupt_image(world, tmp_path, capsys):
    def write(d):
        Path(d, "9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))

    return _image_case(world, tmp_path, capsys, write)


def run_odd_image_modes(world, tmp_path, capsys):
    def write(d):
        Image.new("CMYK", (8, 8), (0, 200, 0, 0)).save(os.path.join(d, "c.jpg"))
        Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(
            os.path.join(d, "g16.png")
        )
        Image.new("P", (8, 8), 3).save(os.path.join(d, "p.png"), transparency=0)
        Image.new("L", (8, 8), 90).save(os.path.join(d, "l.png"))

    return _image_case(world, tmp_path, capsys, write)


def run_missing_root(world, tmp_path, capsys):
    argv = toycoop(world, tmp_path / "out")
    argv[1] = str(tmp_path / "no_data")
    return main(capsys, argv)


def _eurosat(tmp_path) -> tuple[str, list[str]]:
    """Fake EuroSAT with its split file (written by a first, build-only run)."""
    root = tmp_path / "data"
    make_eurosat(str(root))
    dcfg = ["--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml")]
    first = ["--root", str(root), "--trainer", "ToyCoOp", *dcfg, "--no-train"]
    assert train.main([*first, "--output-dir", str(tmp_path / "first")]) == 0
    return str(root), dcfg


def _eurosat_argv(world, tmp_path, root, dcfg, *opts):
    return [
        "--root", root, "--trainer", "ToyCoOp", "--config-file", world["cfg"], *dcfg,
        "--output-dir", str(tmp_path / "out"), *opts,
    ]  # fmt: skip


def run_split_json_malformed(world, tmp_path, capsys):
    root, dcfg = _eurosat(tmp_path)
    split = next(Path(root).rglob("split_zhou_*.json"))
    split.write_text('{"train": [')
    return main(capsys, _eurosat_argv(world, tmp_path, root, dcfg))


def run_split_json_missing_files(world, tmp_path, capsys):
    root, dcfg = _eurosat(tmp_path)
    split = json.loads(next(Path(root).rglob("split_zhou_*.json")).read_text())
    rel = split["train"][0][0]
    next(p for p in Path(root).rglob(os.path.basename(rel))).unlink()
    return main(capsys, _eurosat_argv(world, tmp_path, root, dcfg))


def run_fewshot_cache_other_root(world, tmp_path, capsys):
    root, dcfg = _eurosat(tmp_path)
    argv = ["--no-train", *_eurosat_argv(world, tmp_path, root, dcfg, "DATASET.NUM_SHOTS", "1")]
    assert main(capsys, argv)[0] == 0  # writes split_fewshot/shot_1-seed_*.pkl under root
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    argv[argv.index(root)] = str(moved)
    argv[argv.index(str(tmp_path / "out"))] = str(tmp_path / "out2")
    return main(capsys, argv)


def run_unknown_dataset(world, tmp_path, capsys):
    argv = toycoop(world, tmp_path / "out")
    argv[argv.index("EngineToyData")] = "EngineToyDat"
    return main(capsys, argv)


def run_unknown_trainer(world, tmp_path, capsys):
    argv = toycoop(world, tmp_path / "out")
    argv[argv.index("ToyCoOp")] = "ToyCoop"
    return main(capsys, argv)


def run_unknown_backbone(world, tmp_path, capsys):
    argv = ivlp(world, tmp_path / "out")
    argv[argv.index(world["clip"])] = "ViT-B/61"
    return main(capsys, argv)


def run_config_key_typo(world, tmp_path, capsys):
    return main(capsys, toycoop(world, tmp_path / "out", "OPTIM.LRR", "0.1"))


def run_int_for_float(world, tmp_path, capsys):
    return main(capsys, toycoop(world, tmp_path / "out", "OPTIM.LR", "1"))


def run_input_size_vs_backbone(world, tmp_path, capsys):
    return main(capsys, ivlp(world, tmp_path / "out", "INPUT.SIZE", "(8, 8)"))


def run_num_shots_too_large(world, tmp_path, capsys):
    root, dcfg = _eurosat(tmp_path)
    return main(capsys, _eurosat_argv(world, tmp_path, root, dcfg, "DATASET.NUM_SHOTS", "16"))


def _cv(world, tmp_path, names, dim=48, dataset="EngineToyData") -> str:
    path = tmp_path / "cv.safetensors"
    save_class_vectors(
        str(path), torch.randn(len(names), dim), names, base_classes=range(0, 1),
        new_classes=range(1, len(names)), dataset=dataset,
    )  # fmt: skip
    return str(path)


def run_class_vectors_other_dataset(world, tmp_path, capsys):
    cv = _cv(world, tmp_path, ["AnnualCrop", "Forest", "River"], dataset="EuroSAT")
    return main(capsys, student(world, tmp_path / "out", "TRAINER.PROMPTKD.CLASS_VECTORS", cv))


def run_class_vectors_class_order(world, tmp_path, capsys):
    cv = _cv(world, tmp_path, ["class_1", "class_0", "class_2", "class_3"])
    return main(capsys, student(world, tmp_path / "out", "TRAINER.PROMPTKD.CLASS_VECTORS", cv))


def run_class_vectors_dimension(world, tmp_path, capsys):
    cv = _cv(world, tmp_path, [f"class_{i}" for i in range(4)], dim=24)
    argv = student(
        world, tmp_path / "out", "TRAINER.PROMPTKD.CLASS_VECTORS", cv,
        "TRAINER.PROMPTKD.TEACHER_WEIGHTS", world["clip"], eval_only=False,
    )  # fmt: skip
    return main(capsys, argv)


def run_class_vectors_truncated(world, tmp_path, capsys):
    data = Path(world["cv"]).read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:5])
    return main(
        capsys, student(world, tmp_path / "out", "TRAINER.PROMPTKD.CLASS_VECTORS", str(cut))
    )


def _saved_run(argv, directory) -> None:
    """Build the trainer of ``argv`` in-process and save its (untrained) weights as epoch 1."""
    args = train.build_parser().parse_args(argv)
    cfg = train.setup_cfg(args)
    trainer = build_trainer(cfg)
    trainer.save_model(0, str(directory))


def run_teacher_checkpoint_other_depth(world, tmp_path, capsys):
    run = tmp_path / "teacher_depth1"
    _saved_run(ivlp(world, run, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "1"), run)
    argv = ivlp(world, tmp_path / "out", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2")
    argv[argv.index("--output-dir") :] = [
        *argv[argv.index("--output-dir") : argv.index("--output-dir") + 2],
        "--eval-only", "--model-dir", str(run),
        *argv[argv.index("--output-dir") + 2 :],
    ]  # fmt: skip
    return main(capsys, argv)


def run_student_checkpoint_other_run(world, tmp_path, capsys):
    run = tmp_path / "student_run"
    _saved_run(student(world, run, "TRAINER.PROMPTKD.CLASS_VECTORS", str(world["cv"])), run)
    argv = student(
        world, tmp_path / "out", "TRAINER.PROMPTKD.CLASS_VECTORS", str(world["cv"]),
        "TRAINER.PROMPTKD.N_CTX_VISION", "3",
    )  # fmt: skip
    argv[argv.index("--eval-only") + 1 : argv.index("--eval-only") + 1] = ["--model-dir", str(run)]
    return main(capsys, argv)


def run_load_epoch_missing(world, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(toycoop(world, run)) == 0
    capsys.readouterr()
    argv = toycoop(world, tmp_path / "out")
    argv[-2:-2] = ["--eval-only", "--model-dir", str(run), "--load-epoch", "9"]
    return main(capsys, argv)


def run_output_dir_not_writable(world, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return main(capsys, toycoop(world, blocker / "out"))


def run_disk_full(world, tmp_path, capsys, monkeypatch):
    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dassl.utils.torchtools.torch.save", full)
    return main(capsys, toycoop(world, tmp_path / "out"))


def run_output_dir_in_use(world, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "time": 0}
    (out / LOCK_FILE).write_text(json.dumps(holder))
    return main(capsys, toycoop(world, out))


def run_ranks_disagree(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dist_utils, "env_world_size", lambda: 2)
    monkeypatch.setattr(dist_utils, "init_distributed", lambda *a, **k: True)
    monkeypatch.setattr(dist_utils, "is_distributed", lambda: True)
    monkeypatch.setattr(dist_utils, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist_utils, "get_rank", lambda: 0)
    monkeypatch.setattr(dist_utils, "barrier", lambda: None)
    monkeypatch.setattr(dist_utils, "cleanup", lambda: None)
    monkeypatch.setattr(
        dist_utils, "all_gather_object", lambda d: [d, d.replace("LR: 0.5", "LR: 0.05")]
    )
    return main(capsys, toycoop(world, tmp_path / "out"))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run_checkpoint_runs_code(world, tmp_path, capsys):
    run = tmp_path / "evil_run"
    (run / "prompt_learner").mkdir(parents=True)
    torch.save(
        {"state_dict": {}, "epoch": 1, "x": _RunsCode(tmp_path / "PWNED")},
        run / "prompt_learner" / "model.pth.tar-1",
    )
    argv = toycoop(world, tmp_path / "out")
    argv[-2:-2] = ["--eval-only", "--model-dir", str(run), "--load-epoch", "1"]
    rc, err = main(capsys, argv)
    assert not (tmp_path / "PWNED").exists()
    return rc, err


def run_yaml_runs_code(world, tmp_path, capsys):
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'OPTIM: !!python/object/apply:os.system ["touch {tmp_path}/PWNED"]\n')
    argv = toycoop(world, tmp_path / "out")
    argv[argv.index(world["cfg"])] = str(evil)
    rc, err = main(capsys, argv)
    assert not (tmp_path / "PWNED").exists()
    return rc, err


RUNNERS = {name[4:]: fn for name, fn in dict(globals()).items() if name.startswith("run_")}


def _half_written(out: Path) -> list[Path]:
    """Temporary files of interrupted writes, and checkpoint/result files (none may exist)."""
    if not out.exists():
        return []
    bad = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    bad += [p for p in out.rglob("model*.pth.tar*")] + list(out.rglob("results.json"))
    return bad


def test_table_and_runners_match():
    assert [c.id for c in TABLE] == list(dict.fromkeys(c.id for c in TABLE))
    assert sorted(c.id for c in TABLE) == sorted(RUNNERS)


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_bad_input(case, world, tmp_path, capsys, monkeypatch):
    runner = RUNNERS[case.id]
    extra = {"monkeypatch": monkeypatch} if "monkeypatch" in runner.__code__.co_varnames else {}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rc, err = runner(world, tmp_path, capsys, **extra)
    assert rc == case.exit_code, err
    if case.exit_code == 0:
        if case.message:
            assert case.message in (tmp_path / "out2" / "log.txt").read_text()
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error:"), err  # one line
    assert "Traceback" not in err
    assert case.message in err, err
    assert not _half_written(tmp_path / "out"), _half_written(tmp_path / "out")


def test_odd_image_modes_are_converted_faithfully(tmp_path):
    gray16 = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    got = np.asarray(read_image(str(tmp_path / "g16.png")))
    expected = np.rint(gray16 / 65535 * 255).astype(np.uint8)
    assert got.shape == (8, 8, 3) and (got[..., 0] == expected).all()  # not clipped to white
    Image.new("CMYK", (2, 2), (0, 255, 0, 0)).save(tmp_path / "c.tif")
    assert tuple(np.asarray(read_image(str(tmp_path / "c.tif")))[0, 0]) == (255, 0, 255)


# ------------------------------------------------------------------------------- README sync


def test_readme_troubleshooting_is_generated_from_the_table():
    from tools import troubleshooting

    readme = (REPO / "README.md").read_text()
    assert troubleshooting.update(readme, TABLE) == readme, (
        "README's troubleshooting section is stale: run python tools/troubleshooting.py"
    )


# ------------------------------------------------------------------------------- defects


@TRAINER_REGISTRY.register()
class _BuggyTrainer(ToyCoOp):
    def build_model(self):
        {"a": 1}["b"]  # a programming error, not the user's input


def test_a_bug_keeps_its_traceback_and_the_log(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = toycoop(world, out)
    argv[argv.index("ToyCoOp")] = "_BuggyTrainer"
    with pytest.raises(KeyError, match="b"):
        train.main(argv)
    log = (out / "log.txt").read_text()  # the directory and its log are kept
    assert "Traceback" in log and "KeyError: 'b'" in log and "_BuggyTrainer" in log
    assert not (out / LOCK_FILE).exists()
    assert issubclass(checkpointer.CheckpointMismatchError, UserInputError)


class _NoOptimizer(ToyCoOp):
    """A zero-shot evaluator with a training loop: registered, but without an optimizer."""

    def build_model(self):
        super().build_model()
        self._optims["prompt_learner"] = None
        self._scheds["prompt_learner"] = None

    def forward_backward(self, batch):
        return {"loss": 0.0}


TRAINER_REGISTRY.register(_NoOptimizer)


def test_epoch_logger_without_optimizer(world, tmp_path, capsys):
    argv = toycoop(world, tmp_path / "out", "TRAIN.PRINT_FREQ", "1")
    argv[argv.index("ToyCoOp")] = "_NoOptimizer"
    assert train.main(argv) == 0
    assert "lr " not in capsys.readouterr().out.split("epoch [1/1]")[1].splitlines()[0]


def test_results_epoch_is_the_evaluated_checkpoints(world, tmp_path, capsys):
    run = tmp_path / "run"
    argv = toycoop(world, run, "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1")
    assert train.main(argv) == 0
    for epoch in ("1", "2"):
        out = tmp_path / f"eval{epoch}"
        argv = toycoop(world, out)
        argv[-2:-2] = ["--eval-only", "--model-dir", str(run), "--load-epoch", epoch]
        assert train.main(argv) == 0
        assert json.loads((out / "results.json").read_text())["epoch"] == int(epoch)


def test_student_reads_model_init_weights(world, tmp_path):
    args = train.build_parser().parse_args(
        student(world, tmp_path / "a", "TRAINER.PROMPTKD.CLASS_VECTORS", str(world["cv"]))
    )
    first = build_trainer(train.setup_cfg(args))
    with torch.no_grad():
        for p in first.model.parameters():
            p.add_(0.5)
    init = tmp_path / "init.pth"
    torch.save({"state_dict": first.model.state_dict()}, init)
    args = train.build_parser().parse_args(
        student(
            world,
            tmp_path / "b",
            "TRAINER.PROMPTKD.CLASS_VECTORS",
            str(world["cv"]),
            "MODEL.INIT_WEIGHTS",
            str(init),
        )  # fmt: skip
    )
    second = build_trainer(train.setup_cfg(args))
    for (k, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k
    torch.save({"state_dict": {"unrelated": torch.ones(1)}}, init)
    with pytest.raises(checkpointer.CheckpointMismatchError, match="MODEL.INIT_WEIGHTS"):
        build_trainer(train.setup_cfg(args))


def test_truncated_class_vectors_name_the_file(world, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(Path(world["cv"]).read_bytes()[:-7])
    with pytest.raises(UserInputError, match="cut.safetensors.*truncated or corrupt"):
        load_class_vectors(str(cut))


def test_one_rule_finds_the_checkpoint_in_a_run_dir(tmp_path):
    model = torch.nn.Linear(2, 2)
    models, none = {"VLPromptLearner": model}, {"VLPromptLearner": None}
    run = tmp_path / "run"
    checkpointer.save_models(models, none, none, 0, str(run))
    checkpointer.save_models(models, none, none, 1, str(run))
    d = run / "VLPromptLearner"
    find = checkpointer.find_checkpoint
    assert find(str(run), "VLPromptLearner", purpose="resume") == str(d / "model.pth.tar-2")
    assert find(str(run), "VLPromptLearner") == str(d / "model.pth.tar-2")  # no model-best
    assert find(str(d)) == str(d / "model.pth.tar-2")  # the model directory itself
    assert find(str(run), "VLPromptLearner", epoch=1) == str(d / "model.pth.tar-1")
    checkpointer.save_models(models, none, none, 1, str(run), iteration=3)  # mid-epoch save
    assert find(str(run), "VLPromptLearner", purpose="resume") == str(d / "model-iter.pth.tar")
    checkpointer.save_models(models, none, none, 0, str(run), model_name="model-best.pth.tar")
    assert find(str(run), "VLPromptLearner") == str(d / "model-best.pth.tar")
    assert find(str(run), "VLPromptLearner", purpose="resume") == str(d / "model-iter.pth.tar")
    with pytest.raises(FileNotFoundError, match=r"epoch 7 was not saved .*\[1, 2\]"):
        find(str(run), "VLPromptLearner", epoch=7)
    assert find(str(tmp_path / "new"), "VLPromptLearner", purpose="resume") is None
    # The teacher resolver and the class-vector side-file rule are the same rule.
    from trainers.teacher_io import resolve_teacher_checkpoint

    assert resolve_teacher_checkpoint(str(run)) == str(d / "model-best.pth.tar")
    assert checkpointer.run_dir_of(str(d / "model.pth.tar-1"), "VLPromptLearner") == str(run)
    assert checkpointer.run_dir_of(str(run), "VLPromptLearner") == str(run)


def _engine_with_model():
    tb = TrainerBase()
    model = torch.nn.Linear(2, 1)
    tb.register_model("m", model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    return tb, model


def test_non_finite_loss_stops_with_iteration_terms_and_causes():
    tb, model = _engine_with_model()
    tb.epoch, tb.batch_idx = 2, 4
    loss = model(torch.ones(1, 2)).sum() * float("inf")
    terms = {"loss_kd": torch.tensor(float("inf")), "loss_ce": 0.5}
    with pytest.raises(NonFiniteLossError) as info:
        tb.model_backward_and_update(loss, terms=terms)
    msg = str(info.value)
    assert "epoch 3, batch 5" in msg and "loss_kd" in msg and "fp16 overflow" in msg
    assert "KD weight" in msg and "TRAIN.NONFINITE" in msg


def test_non_finite_gradient_is_skipped_by_config(world):
    tb, model = _engine_with_model()
    args = train.build_parser().parse_args(toycoop(world, "x", "TRAIN.NONFINITE", "skip"))
    tb.cfg = train.setup_cfg(args)
    w0 = model.weight.detach().clone()
    model.weight.register_hook(lambda g: g * float("inf"))  # finite loss, inf gradient
    loss = model(torch.ones(1, 2)).sum()
    assert torch.isfinite(loss)
    tb.model_backward_and_update(loss)
    assert torch.equal(model.weight, w0) and tb.skipped_steps == 1


class _NanAtEpoch2(ToyCoOp):
    def forward_backward(self, batch):
        if self.epoch == 1:
            image, label = self.parse_batch_train(batch)
            loss = self.model(image).sum() * float("nan")
            self.model_backward_and_update(loss)
        return super().forward_backward(batch)


TRAINER_REGISTRY.register(_NanAtEpoch2)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = toycoop(world, out, "OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1")
    argv[argv.index("ToyCoOp")] = "_NanAtEpoch2"
    rc, err = main(capsys, argv)
    assert rc == 2 and "loss is infinite or NaN at epoch 2, batch 1" in err
    ckpts = sorted(p.name for p in (out / "prompt_learner").iterdir())
    assert ckpts == ["checkpoint", "model.pth.tar-1"]
    assert load_checkpoint(str(out / "prompt_learner" / "model.pth.tar-1"))["epoch"] == 1
    assert "loss is infinite or NaN" in (out / "log.txt").read_text()


def test_class_vectors_name_the_weights_they_come_from(world, tmp_path, capsys):
    out = tmp_path / "teacher"
    argv = ivlp(
        world, out, "OPTIM.MAX_EPOCH", "2", "TEST.FINAL_MODEL", "best_val",
        "TRAINER.PROMPTSRC.GPA_MEAN", "1",
    )  # fmt: skip
    assert train.main(argv) == 0
    best = out / "VLPromptLearner" / "model-best.pth.tar"
    cv = load_class_vectors(str(out / "class_vectors.safetensors"))
    assert cv.teacher_checkpoint_sha256 == sha256_file(str(best))
    # and the vectors are those of model-best's weights (what was deployed and evaluated)
    args = train.build_parser().parse_args(ivlp(world, tmp_path / "re"))
    re_built = build_trainer(train.setup_cfg(args))
    re_built.load_model(str(out))
    again = re_built.teacher_class_vectors(cv.classnames)
    assert torch.allclose(again, cv.vectors, atol=1e-5)


def test_yaml_and_checkpoints_load_without_running_code(tmp_path):
    buf = io.BytesIO()
    torch.save({"x": _RunsCode(tmp_path / "PWNED")}, buf)
    (tmp_path / "t.pth").write_bytes(buf.getvalue())
    from trainers.teacher_io import read_teacher_state_dict

    with pytest.raises(UserInputError, match="refused"):
        read_teacher_state_dict(str(tmp_path / "t.pth"))
    assert not (tmp_path / "PWNED").exists()
    assert sys.modules.get("yaml") is not None


def test_skip_policy_with_the_upstream_two_step_api(world):
    # model_zero_grad / model_backward / model_update (CoOp-style trainers): a skipped
    # backward must not let the optimizer step (SGD momentum would still move the weights).
    tb, model = _engine_with_model()
    tb._optims["m"] = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    args = train.build_parser().parse_args(toycoop(world, "x", "TRAIN.NONFINITE", "skip"))
    tb.cfg = train.setup_cfg(args)
    tb.model_zero_grad()
    tb.model_backward(model(torch.ones(1, 2)).sum())
    tb.model_update()  # one good step: momentum buffers exist now
    w1 = model.weight.detach().clone()
    tb.model_zero_grad()
    tb.model_backward(model(torch.ones(1, 2)).sum() * float("nan"))
    tb.model_update()
    assert torch.equal(model.weight, w1) and tb.skipped_steps == 1
