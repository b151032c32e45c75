"""Synthesize a set per style strategy and print diversity and teacher accuracy (one command).

Toy world (all four strategies, a few minutes on 2 CPU cores)::

    python tools/datafree_measures.py --output-dir output/datafree/toy --grid docs/datafree_toy_grid.png

Each strategy's set goes to ``<output-dir>/<strategy>`` (resumable: a rerun reuses finished
sets and batches). Prints a Markdown table on stdout and writes ``<output-dir>/measures.json``
with the machine, the settings and the seconds each set took.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dassl.config import merge_cfg_file, merge_cfg_list  # noqa: E402
from dassl.engine.precision import resolve_device  # noqa: E402
from dassl.utils import UserInputError, atomic_write  # noqa: E402
from dassl.utils.logger import get_logger, setup_logger  # noqa: E402

logger = get_logger("tools.datafree_measures")
STRATEGIES = ("none", "mix", "random", "contrastive")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--dataset-config-file", default=os.path.join(_ROOT, "configs/datasets/toy_shapes.yaml")
    )
    p.add_argument("--config-file", default=os.path.join(_ROOT, "configs/datafree/toy.yaml"))
    p.add_argument(
        "--root", default="", help="data root (datasets whose classes live in a split file)"
    )
    p.add_argument("--output-dir", required=True)
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated")
    p.add_argument("--grid", default="", help="PNG grid of all strategies (classes x samples)")
    p.add_argument("--grid-classes", type=int, default=12, help="classes shown in the grid")
    p.add_argument("--grid-scale", type=int, default=2, help="pixel upscaling of the grid tiles")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every strategy")
    return p


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else "",
    }


def paired_vs(rows: Sequence[dict], base: str = "none") -> dict[str, tuple[float, float, int]]:
    """Per strategy: mean and s.e. over classes of (its class diversity - ``base``'s), classes higher."""
    ref = next((r for r in rows if r["strategy"] == base), None)
    out = {}
    for r in rows:
        if ref is None or len(r["per_class_diversity"]) != len(ref["per_class_diversity"]):
            continue
        d = np.array(r["per_class_diversity"]) - np.array(ref["per_class_diversity"])
        sem = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        out[r["strategy"]] = (float(d.mean()), sem, int((d > 0).sum()))
    return out


def render_table(rows: Sequence[dict]) -> str:
    paired = paired_vs(rows)
    head = (
        "| strategy | images | teacher acc. (%) | mean p(class) | diversity (± s.e.) | "
        "vs none, paired (classes higher) | wall s | CPU s | CPU s / image |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        p = paired.get(r["strategy"])
        vs = f"{p[0]:+.4f} ± {p[1]:.4f} ({p[2]}/{len(r['per_class_diversity'])})" if p else "-"
        lines.append(
            f"| {r['strategy']} | {r['images']} | {100 * r['accuracy']:.1f} | "
            f"{r['mean_prob']:.3f} | {r['diversity']:.4f} ± {r['diversity_sem']:.4f} | {vs} | "
            f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} | "
            f"{r['cpu_seconds'] / max(r['images'], 1):.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logger(None)
    from datafree.config import get_datafree_cfg
    from datafree.grid import write_grid
    from datafree.measures import measure_set
    from datafree.surrogate_set import resolve_classnames, synthesize_set
    from datafree.teacher import load_teacher

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    device = resolve_device(not args.no_cuda)
    rows, folders = [], {}
    try:
        for strategy in strategies:
            cfg = get_datafree_cfg()
            merge_cfg_file(cfg, args.dataset_config_file)
            if args.config_file:
                merge_cfg_file(cfg, args.config_file)
            if args.root:
                cfg.DATASET.ROOT = args.root
            merge_cfg_list(cfg, [*args.opts, "DATAFREE.STRATEGY", strategy])
            cfg.freeze()
            folder = os.path.join(args.output_dir, strategy)
            start, cpu_start = time.time(), time.process_time()
            summary = synthesize_set(cfg, folder, device, progress=not args.no_progress)
            seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start
            node = cfg.DATAFREE
            teacher = load_teacher(
                node.TEACHER,
                resolve_classnames(cfg),
                node.PLAIN_TEMPLATE,
                node.TEACHER_RUN,
                node.CLASS_VECTORS,
                cfg.DATASET.NAME,
                device,
            )
            row = measure_set(folder, teacher)
            # time of the call that made the images (teacher load and style training included;
            # a resumed run only times its share, so it reports none)
            full = summary["images"] == row["images"]
            row["seconds"] = seconds if full else float("nan")
            row["cpu_seconds"] = cpu_seconds if full else float("nan")
            row["folder"] = folder
            rows.append(row)
            folders[strategy] = folder
    except UserInputError as err:
        sys.stderr.write(f"datafree_measures: error: {err.args[0] if err.args else err!r}\n")
        return 2
    table = render_table(rows)
    sys.stdout.write(table)
    out = {"machine": machine(), "args": vars(args), "results": rows}
    with atomic_write(os.path.join(args.output_dir, "measures.json")) as f:
        json.dump(out, f, indent=1)
    if args.grid:
        write_grid(args.grid, folders, max_classes=args.grid_classes, scale=args.grid_scale)
        logger.info("Grid written to %s", args.grid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
