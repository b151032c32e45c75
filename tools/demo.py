"""The embedded default: the whole PromptKD pipeline on the toy world (README's first command).

Every stage is a real ``train.py`` run with the real trainers and the toy configs in
``configs/``, so the demo is also a worked example of the workflow::

    student_zeroshot  ZeroshotCLIP    toy-student, base and new test classes
    teacher_zeroshot  ZeroshotCLIP    toy-teacher
    teacher           PromptKDTeacher 16 shots of the base classes, labelled; writes the
                                      class vectors of all 36 classes
    student           PromptKDStudent all unlabelled train images (transductive), soft labels
                                      from the frozen teacher image tower + class vectors

Runs land in ``<output>/demo/<stage>/ToyShapes/seed<S>/``; the table is printed with
``tools/parse_test_res.py`` and ``<output>/demo/summary.json`` holds Base/New/HM in percent.
A stage is skipped when its ``results.json`` exists and its ``command.txt`` equals the command
it would run now (so re-running resumes; changing an option reruns what it affects).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from dassl.utils import write_json  # noqa: E402
from datasets.toy_shapes import N_TEST, N_TRAIN, N_VAL, generate_toy_shapes  # noqa: E402
from tools import parse_test_res  # noqa: E402

logger = logging.getLogger("demo")

DATASET = "ToyShapes"
STAGES = ("student_zeroshot", "teacher_zeroshot", "teacher", "student")
DATASET_CONFIG = "configs/datasets/toy_shapes.yaml"


@dataclass
class Stage:
    name: str
    title: str
    args: list[str]


def build_stages(out: str, seed: int, epochs: int | None, shots: int) -> list[Stage]:
    """The four train.py runs (flags first, then KEY VALUE opts, as train.py expects)."""
    teacher_dir = run_dir(out, "teacher", seed)
    epoch_opts = ["OPTIM.MAX_EPOCH", str(epochs)] if epochs else []
    zeroshot = [
        "--trainer",
        "ZeroshotCLIP",
        "--config-file",
        "configs/trainers/ZeroshotCLIP/toy.yaml",
    ]
    return [
        Stage(
            "student_zeroshot",
            "zero-shot student (toy-student)",
            [*zeroshot, "--eval-only", "MODEL.BACKBONE.NAME", "toy-student"]
            + ["DATASET.SUBSAMPLE_CLASSES", "base"],
        ),
        Stage(
            "teacher_zeroshot",
            "zero-shot teacher (toy-teacher)",
            [*zeroshot, "--eval-only", "MODEL.BACKBONE.NAME", "toy-teacher"]
            + ["DATASET.SUBSAMPLE_CLASSES", "base"],
        ),
        Stage(
            "teacher",
            f"PromptKDTeacher: {shots}-shot labelled base classes, then class vectors",
            ["--trainer", "PromptKDTeacher"]
            + ["--config-file", "configs/trainers/PromptKDTeacher/toy.yaml"]
            + ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "base", *epoch_opts],
        ),
        Stage(
            "student",
            "PromptKDStudent: distil on all unlabelled train images",
            ["--trainer", "PromptKDStudent"]
            + ["--config-file", "configs/trainers/PromptKDStudent/toy.yaml"]
            + ["TRAINER.MODAL", "base2novel", "TRAINER.PROMPTKD.TEACHER_WEIGHTS", teacher_dir]
            + epoch_opts,
        ),
    ]


def run_dir(out: str, stage: str, seed: int) -> str:
    return os.path.join(out, "demo", stage, DATASET, f"seed{seed}")


def signature(args: Sequence[str], data: dict) -> str:
    """What makes a finished stage reusable: its arguments and the data it ran on."""
    return json.dumps({"args": list(args), "data": data}, sort_keys=True)


def run_stage(stage: Stage, index: int, args: argparse.Namespace, data: dict) -> dict:
    """Run one stage through train.py (unless finished); return its results.json."""
    out = run_dir(args.output, stage.name, args.seed)
    results = os.path.join(out, "results.json")
    command = os.path.join(out, "command.txt")
    argv = ["--root", args.data, "--seed", str(args.seed)]
    argv += ["--dataset-config-file", DATASET_CONFIG, "--output-dir", out, *stage.args]
    want = signature(stage.args, data)
    header = f"[{index}/{len(STAGES)}] {stage.title}"
    if os.path.isfile(results) and os.path.isfile(command):
        with open(command, encoding="utf-8") as f:
            if f.read() == want:
                logger.info("%s: finished earlier, reusing %s", header, out)
                with open(results, encoding="utf-8") as f:
                    return json.load(f)
    logger.info("%s -> %s", header, out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    with open(command, "w", encoding="utf-8") as f:
        f.write(want)
    start = time.time()
    cmd = [sys.executable, os.path.join(REPO, "train.py"), *argv]
    proc = subprocess.run(cmd, cwd=REPO, stdout=None if args.verbose else subprocess.DEVNULL)
    if proc.returncode != 0 or not os.path.isfile(results):
        raise RuntimeError(
            f"stage {stage.name} failed (exit {proc.returncode}); its log is {out}/log.txt. "
            f"Command: {' '.join(cmd)}"
        )
    with open(results, encoding="utf-8") as f:
        res = json.load(f)
    logger.info(
        "%s done in %.0f s: base %.2f new %.2f HM %.2f",
        header,
        time.time() - start,
        res["base"],
        res["new"],
        res["hm"],
    )
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DATA", "data"), help="data root [data]")
    p.add_argument("--output", default=os.environ.get("OUTPUT", "output"), help="[output]")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shots", type=int, default=16, help="teacher's labelled shots per class")
    p.add_argument("--epochs", type=int, default=None, help="override both trainers' epochs")
    p.add_argument("--train-per-class", type=int, default=N_TRAIN)
    p.add_argument("--val-per-class", type=int, default=N_VAL)
    p.add_argument("--test-per-class", type=int, default=N_TEST)
    p.add_argument(
        "--fast",
        action="store_true",
        help="a smaller, quicker variant (fewer images and epochs), as the test suite runs",
    )
    p.add_argument("-q", "--quiet", dest="verbose", action="store_false", help="hide train.py")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[demo] %(message)s", stream=sys.stderr)
    if args.fast:
        args.train_per_class, args.val_per_class, args.test_per_class = 16, 2, 16
        args.shots = min(args.shots, 8)
        args.epochs = args.epochs or 4
    args.data = os.path.abspath(args.data)
    args.output = os.path.abspath(args.output)
    sizes = (args.train_per_class, args.val_per_class, args.test_per_class)
    os.makedirs(args.data, exist_ok=True)
    logger.info("ToyShapes data (%d/%d/%d images per class) in %s", *sizes, args.data)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the final table
        generate_toy_shapes(args.data, *sizes)
    data = {"per_class": sizes}

    start = time.time()
    summary = {}
    try:
        for i, stage in enumerate(build_stages(args.output, args.seed, args.epochs, args.shots)):
            res = run_stage(stage, i + 1, args, data)
            summary[stage.name] = {k: round(float(res[k]), 2) for k in ("base", "new", "hm")}
    except RuntimeError as err:
        logger.error("%s", err)
        return 1
    demo_dir = os.path.join(args.output, "demo")
    write_json(summary, os.path.join(demo_dir, "summary.json"))
    logger.info(
        "all stages done in %.0f s; summary: %s/summary.json", time.time() - start, demo_dir
    )
    sys.stdout.write("\n")
    return parse_test_res.main([demo_dir, "--compact", "--methods", *STAGES])


if __name__ == "__main__":
    sys.exit(main())
