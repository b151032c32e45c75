"""Data-free distillation on the toy world, evaluated on every ToyShapesDG domain (README's third command).

Only class names and a frozen toy CLIP teacher are used to make the student; no training image
is read. Every stage is a real run of ``train.py`` / ``tools/synthesize.py`` /
``tools/export_class_vectors.py``::

    teacher_zeroshot   ZeroshotCLIP toy-teacher on the four domains (reference)
    student_zeroshot   ZeroshotCLIP toy-student on the four domains (reference)
    teacher            the zero-shot teacher's class vectors (template features of the class
                       names); its frozen image tower gives the soft labels
    for each strategy (none, mix, random, contrastive):
      synth/<s>        tools/synthesize.py: N surrogate images per class from text prompts
      <s>              PromptKDStudent (toy-student) distilled on them (TRAIN_SOURCE), evaluated
                       on photo / smooth / sketch / cartoon; with --cnn also KDStudent tiny_cnn

Runs land in ``<output>/datafree/<method>/ToyShapesDG/seed<S>/``; the per-domain table is
printed (with each strategy's diversity and every row's gap to the zero-shot teacher) and
``<output>/datafree/summary.json`` holds, per method, ``accuracy`` (mean over domains, %),
``domains`` and, for strategies, ``diversity`` (means over seeds). A stage is skipped when its
result exists and its ``command.txt`` equals the command it would run now.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from dassl.utils import write_json  # noqa: E402
from dassl.utils.logger import close_logger  # noqa: E402
from datasets.toy_shapes_dg import N_TEST, N_TRAIN, N_VAL, generate_toy_shapes_dg  # noqa: E402
from datasets.toy_shapes_dg import RENDER_VERSION as TOY_DG_VERSION  # noqa: E402
from tools import parse_test_res  # noqa: E402
from tools.domain_table import collect_domain_rows, render_domain_table  # noqa: E402

logger = logging.getLogger("datafree_demo")

DATASET = "ToyShapesDG"
DATASET_CONFIG = "configs/datasets/toy_shapes_dg.yaml"
STRATEGIES = ("none", "mix", "random", "contrastive")
TEACHER_CLIP = "toy-teacher"
STUDENT_CLIP = "toy-student"
REFERENCES = ("teacher_zeroshot", "student_zeroshot")


@dataclass
class Settings:
    """What the stages are run with (the full demo and the --fast variant differ only here)."""

    sizes: tuple[int, int, int]  # ToyShapesDG images per class per domain: train, val, test
    n_per_class: int  # synthesized images per class
    synth_opts: list[str]  # DATAFREE KEY VALUE overrides
    epochs: int  # student epochs


FULL = Settings((N_TRAIN, N_VAL, N_TEST), 2, ["DATAFREE.OPTIM.STEPS", "30"], 100)
FAST = Settings(
    (1, 1, 2),
    2,
    ["DATAFREE.OPTIM.STEPS", "3", "DATAFREE.CONTRASTIVE.STEPS", "5", "DATAFREE.AUG.CUTOUTS", "2"],
    2,
)


def run_dir(out: str, method: str, seed: int) -> str:
    return os.path.join(out, "datafree", method, DATASET, f"seed{seed}")


def synth_dir(out: str, strategy: str, seed: int) -> str:
    # not named seed<N>: parse_test_res must not take it for a run
    return os.path.join(out, "datafree", "synth", strategy, f"s{seed}")


def _reuse(out: str, result: str, want: str) -> bool:
    command = os.path.join(out, "command.txt")
    if os.path.isfile(result) and os.path.isfile(command):
        with open(command, encoding="utf-8") as f:
            return f.read() == want
    return False


def _entry_point(script: str):
    """The importable ``main(argv)`` of a stage's script (run in this process: no re-import)."""
    if script == "train.py":
        import train

        return train.main
    if script == "tools/synthesize.py":
        from tools import synthesize

        return synthesize.main
    from tools import export_class_vectors

    return export_class_vectors.main


def _run(
    cmd_args: list[str], out: str, result: str, title: str, verbose: bool, data: str = ""
) -> None:
    """Run ``<script> <args>`` for a stage whose result file is ``result`` (unless reusable).

    Stages run in this process through the scripts' ``main(argv)`` (the command line printed on
    failure is the equivalent shell command); their console output is hidden with ``-q``.
    """
    want = json.dumps({"args": cmd_args, "data": data}) if data else json.dumps(cmd_args)
    if _reuse(out, result, want):
        logger.info("%s: finished earlier, reusing %s", title, out)
        return
    logger.info("%s -> %s", title, out)
    if os.path.isdir(out) and not cmd_args[0].endswith("synthesize.py"):
        shutil.rmtree(out)  # a synthesis folder is resumable: keep its finished batches
    os.makedirs(out, exist_ok=True)
    start = time.time()
    sink = io.StringIO()
    try:
        with contextlib.ExitStack() as stack:
            if not verbose:
                stack.enter_context(contextlib.redirect_stdout(sink))
                stack.enter_context(contextlib.redirect_stderr(sink))
            rc = _entry_point(cmd_args[0])(cmd_args[1:])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # a stage's failure ends the demo with its message
        rc = f"{type(exc).__name__}: {exc}"
    finally:
        close_logger()  # the stage's log file (and its stdout tee) ends with the stage
    if rc not in (0, None) or not os.path.exists(result):
        raise RuntimeError(
            f"{title} failed ({rc}); output in {out}. Command: python {' '.join(cmd_args)}\n"
            + sink.getvalue()[-2000:]
        )
    with open(os.path.join(out, "command.txt"), "w", encoding="utf-8") as f:
        f.write(want)
    logger.info("%s done in %.0f s", title, time.time() - start)


def _data_tag(args: argparse.Namespace) -> str:
    """The evaluation data's generation parameters: regenerated data reruns the stages using it."""
    return f"toy_shapes_dg v{TOY_DG_VERSION} " + "/".join(map(str, args.settings.sizes))


def _train_args(args: argparse.Namespace, out: str, seed: int, rest: list[str]) -> list[str]:
    return [
        "train.py", "--root", args.data, "--seed", str(seed), "--output-dir", out,
        "--dataset-config-file", DATASET_CONFIG, *rest,
    ]  # fmt: skip


def reference_stage(args: argparse.Namespace, method: str, clip_name: str, seed: int) -> dict:
    out = run_dir(args.output, method, seed)
    rest = ["--trainer", "ZeroshotCLIP", "--config-file", "configs/trainers/ZeroshotCLIP/toy.yaml"]
    rest += ["--eval-only", "MODEL.BACKBONE.NAME", clip_name]
    result = os.path.join(out, "results.json")
    _run(
        _train_args(args, out, seed, rest),
        out,
        result,
        f"zero-shot {clip_name}",
        args.verbose,
        _data_tag(args),
    )
    return _read(result)


def teacher_stage(args: argparse.Namespace) -> str:
    """The zero-shot teacher's class vectors of the 36 classes; returns the file."""
    out = os.path.join(args.output, "datafree", "teacher")
    result = os.path.join(out, "class_vectors.safetensors")
    cmd = ["tools/export_class_vectors.py", "--trainer", "ZeroshotCLIP"]
    cmd += ["--teacher-weights", TEACHER_CLIP, "--root", args.data]
    cmd += ["--dataset-config-file", DATASET_CONFIG, "--output", result]
    cmd += ["--config-file", "configs/trainers/ZeroshotCLIP/toy.yaml"]
    _run(cmd, out, result, "zero-shot teacher class vectors", args.verbose)
    return result


def synth_stage(args: argparse.Namespace, strategy: str, seed: int) -> str:
    out = synth_dir(args.output, strategy, seed)
    grid = (
        os.path.join(args.output, "datafree", "grids", f"{strategy}.png")
        if seed == args.seeds[0]
        else ""
    )
    cmd = ["tools/synthesize.py", "--dataset-config-file", DATASET_CONFIG, "--root", args.data]
    cmd += ["--config-file", "configs/datafree/toy.yaml", "--teacher", TEACHER_CLIP]
    cmd += ["--strategy", strategy, "--n-per-class", str(args.settings.n_per_class)]
    cmd += ["--seed", str(seed), "--output-dir", out, "--no-progress"]
    cmd += ["--grid", grid] if grid else []
    cmd += args.settings.synth_opts
    _run(
        cmd,
        out,
        os.path.join(out, "metadata.json"),
        f"synthesize {strategy} (seed {seed})",
        args.verbose,
    )
    return out


def student_stage(
    args: argparse.Namespace,
    method: str,
    trainer: str,
    synth: str,
    vectors: str,
    seed: int,
    extra: list[str],
) -> dict:
    out = run_dir(args.output, method, seed)
    rest = [
        "--trainer",
        trainer,
        "--config-file",
        "configs/trainers/PromptKDStudent/toy_datafree.yaml",
    ]
    rest += [
        "TRAINER.PROMPTKD.TEACHER_WEIGHTS",
        TEACHER_CLIP,
        "TRAINER.PROMPTKD.CLASS_VECTORS",
        vectors,
    ]
    rest += ["TRAINER.PROMPTKD.TRAIN_SOURCE", synth, "OPTIM.MAX_EPOCH", str(args.settings.epochs)]
    rest += extra
    result = os.path.join(out, "results.json")
    _run(
        _train_args(args, out, seed, rest),
        out,
        result,
        f"{trainer} on {method} (seed {seed})",
        args.verbose,
        _data_tag(args),
    )
    return _read(result)


def _read(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def measure(synth: str, teacher: str = TEACHER_CLIP) -> dict:
    """Diversity of a synthesized set and the teacher's accuracy on it (datafree.measures)."""
    from datafree.measures import measure_set
    from datafree.surrogate_set import read_surrogate_set
    from datafree.teacher import load_teacher

    names = read_surrogate_set(synth)["classnames"]
    return measure_set(synth, load_teacher(teacher, names))


def overview_figure(path: str, data_root: str, synth: dict[str, str]) -> str:
    """One PNG: a row per ToyShapesDG domain (real test images) and per strategy (synthesized
    images), a column per class (12 classes: every colour, every shape twice); 2x upscaled."""
    from PIL import Image, ImageDraw

    from datasets.toy_render import CLASSNAMES
    from datasets.toy_render_dg import DG_DOMAINS
    from trainers.image_source import read_image_folder

    labels = [6 * c + s for c in range(6) for s in ((2 * c) % 6, (2 * c + 1) % 6)]
    rows: list[tuple[str, list[str]]] = []
    image_dir = os.path.join(data_root, "toy_shapes_dg", "images")
    for domain in DG_DOMAINS:
        rows.append(
            (
                domain,
                [
                    os.path.join(
                        image_dir, domain, CLASSNAMES[y].replace(" ", "_"), "test_0000.png"
                    )
                    for y in labels
                ],
            )
        )
    for strategy, folder in synth.items():
        first = {}
        for item in read_image_folder(folder):
            first.setdefault(item.label, item.impath)
        rows.append((f"synth: {strategy}", [first[y] for y in labels]))
    cell, left, top = 64, 110, 28
    fig = Image.new("RGB", (left + cell * len(labels), top + cell * len(rows)), "white")
    draw = ImageDraw.Draw(fig)
    for j, y in enumerate(labels):
        draw.text((left + j * cell + 2, 2), CLASSNAMES[y].replace(" ", "\n"), fill="black")
    for i, (name, paths) in enumerate(rows):
        draw.text((4, top + i * cell + cell // 2 - 6), name, fill="black")
        for j, p in enumerate(paths):
            img = Image.open(p).convert("RGB").resize((cell, cell), Image.NEAREST)
            fig.paste(img, (left + j * cell, top + i * cell))
    fig.save(path)
    return path


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 2)


def summarize(
    results: dict[str, list[dict]],
    diversities: dict[str, list[float]],
    set_accuracy: dict[str, list[float]],
) -> dict:
    """summary.json: per method, means over seeds (percent; diversity as measured).

    Strategies also get ``teacher_on_set``: the teacher's accuracy (%) on its synthesized set.
    """
    summary = {}
    for method, runs in results.items():
        domains = runs[0]["target_domains"]
        row = {
            "accuracy": _mean([r["accuracy"] for r in runs]),
            "domains": {d: _mean([r["domains"][d] for r in runs]) for d in domains},
            "seeds": [r["seed"] for r in runs],
        }
        if method in diversities:
            row["diversity"] = round(sum(diversities[method]) / len(diversities[method]), 4)
            row["teacher_on_set"] = _mean(set_accuracy[method])
        summary[method] = row
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("DATA", "data"), help="data root [data]")
    p.add_argument("--output", default=os.environ.get("OUTPUT", "output"), help="[output]")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds (synthesis + student)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--cnn", action="store_true", help="also distil the tiny CNN (KDStudent)")
    p.add_argument("--fast", action="store_true", help="tiny sizes, as the test suite runs")
    p.add_argument("-q", "--quiet", dest="verbose", action="store_false", help="hide the stages")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)  # not the root logger: stages log on their own
    handler.setFormatter(logging.Formatter("[datafree] %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    args.settings = FAST if args.fast else FULL
    args.data = os.path.abspath(args.data)
    args.output = os.path.abspath(args.output)
    os.makedirs(args.data, exist_ok=True)
    logger.info(
        "ToyShapesDG (%d/%d/%d images per class and domain) in %s", *args.settings.sizes, args.data
    )
    with contextlib.redirect_stdout(sys.stderr):
        generate_toy_shapes_dg(args.data, *args.settings.sizes)

    start = time.time()
    results: dict[str, list[dict]] = {}
    diversities: dict[str, list[float]] = {}
    set_accuracy: dict[str, list[float]] = {}
    try:
        # zero-shot evaluation has no randomness: the references run once, with seed 1
        results["teacher_zeroshot"] = [reference_stage(args, "teacher_zeroshot", TEACHER_CLIP, 1)]
        results["student_zeroshot"] = [reference_stage(args, "student_zeroshot", STUDENT_CLIP, 1)]
        vectors = teacher_stage(args)
        for strategy in args.strategies:
            for seed in args.seeds:
                synth = synth_stage(args, strategy, seed)
                with contextlib.redirect_stdout(sys.stderr if args.verbose else io.StringIO()):
                    measured = measure(synth)  # stdout carries only the final table
                diversities.setdefault(strategy, []).append(measured["diversity"])
                set_accuracy.setdefault(strategy, []).append(100 * measured["accuracy"])
                res = student_stage(args, strategy, "PromptKDStudent", synth, vectors, seed, [])
                results.setdefault(strategy, []).append(res)
                if args.cnn:
                    cnn = ["MODEL.BACKBONE.NAME", "tiny_cnn", "OPTIM.LR", "0.05"]
                    res = student_stage(
                        args, f"{strategy}_cnn", "KDStudent", synth, vectors, seed, cnn
                    )
                    results.setdefault(f"{strategy}_cnn", []).append(res)
    except RuntimeError as err:
        logger.error("%s", err)
        return 1
    root = os.path.join(args.output, "datafree")
    synth_dirs = {s: synth_dir(args.output, s, args.seeds[0]) for s in args.strategies}
    figure = overview_figure(os.path.join(root, "overview.png"), args.data, synth_dirs)
    logger.info("domains and synthesized images: %s", figure)
    summary = summarize(results, diversities, set_accuracy)
    write_json(summary, os.path.join(root, "summary.json"))
    logger.info("all stages done in %.0f s; summary: %s/summary.json", time.time() - start, root)

    methods = list(results)
    runs = [
        r
        for r in parse_test_res.collect(Path(root))
        if r.method in methods and r.seed in args.seeds
    ]
    rows = collect_domain_rows(root, runs)
    rows.sort(key=lambda r: methods.index(r.method))
    strategies = [m for m in summary if "diversity" in summary[m]]
    extra = {
        "Diversity": {m: f"{summary[m]['diversity']:.4f}" for m in strategies},
        "Teacher on set": {m: f"{summary[m]['teacher_on_set']:.1f}" for m in strategies},
    }
    sys.stdout.write(render_domain_table(rows, extra=extra, reference="teacher_zeroshot"))
    best = max((m for m in summary if m not in REFERENCES), key=lambda m: summary[m]["accuracy"])
    sys.stdout.write(
        f"best strategy: {best} ({summary[best]['accuracy']:.2f}% mean over domains; zero-shot "
        f"teacher {summary['teacher_zeroshot']['accuracy']:.2f}%, zero-shot student "
        f"{summary['student_zeroshot']['accuracy']:.2f}%)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
