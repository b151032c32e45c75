"""Figures of sweep results: Base/New/HM bars per dataset, and training curves.

Usage::

    # grouped bars, one colour per method; inputs are sweep dirs or parse_test_res JSON files
    python tools/plot_results.py bars output/base2novel=PromptKD coop.json=CoOp -o b2n.png
    python tools/plot_results.py bars output/base2novel --paper -o b2n.png
    # per-domain bars of multi-domain runs (PACS, ToyShapesDG, ...): one bar per method
    python tools/plot_results.py domains output/datafree -o domains.png
    # training curves of every run below a directory (from <run>/metrics.jsonl)
    python tools/plot_results.py curves output/base2novel/EuroSAT -o curves.png

Bars show the mean over seeds with the population std as error bars; the Average group uses the
paper's convention (HM of the averaged Base and New), exactly as ``parse_test_res`` computes it.
``metrics.jsonl`` lines (written by ``dassl/engine/metric_writer.py``) are
``{"type": "train", "epoch", "losses": {...}, "lr"}`` and
``{"type": "test", "split", "epoch", "results": {"accuracy", ...}}``; unknown or missing fields
are skipped, so partial files of killed runs plot too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

try:
    from tools import paper_numbers, parse_test_res
except ImportError:  # pragma: no cover - script run from another directory
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tools import paper_numbers, parse_test_res

logger = logging.getLogger("plot_results")

Series = dict[str, dict[str, tuple[float, float]]]  # dataset -> metric -> (mean, std)


def _split_label(spec: str) -> tuple[Path, str | None]:
    path, sep, label = spec.partition("=")
    return Path(path), (label if sep else None)


def load_input(spec: str) -> list[tuple[str, str, Series]]:
    """Read ``PATH[=LABEL]``: a sweep dir or a parse_test_res JSON file -> (label, kind, series)."""
    path, label = _split_label(spec)
    if path.is_dir():
        rows = json.loads(
            parse_test_res.render(parse_test_res.build_tables(parse_test_res.collect(path)), "json")
        )
    elif path.is_file():
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise ValueError(
                f"{path}: expected the JSON list written by parse_test_res --format json"
            )
    else:
        raise FileNotFoundError(f"no such file or directory: {path}")
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(str(row.get("method", path.name)), []).append(row)
    out = []
    for method, method_rows in by_method.items():
        kind = "b2n" if any(r.get("base") is not None for r in method_rows) else "accuracy"
        metrics = ("base", "new", "hm") if kind == "b2n" else ("accuracy",)
        series: Series = {}
        for row in method_rows:
            values = {
                m: (float(row[m]), float(row.get(f"{m}_std") or 0.0))
                for m in metrics
                if row.get(m) is not None
            }
            if values:
                series[str(row["dataset"])] = values
        name = label if label and len(by_method) == 1 else method
        if label and len(by_method) > 1:
            name = f"{label}: {method}"
        out.append((name, kind, series))
    if not out:
        raise ValueError(f"{path}: no results")
    return out


def paper_series(kind: str, method: str = "PromptKD") -> Series:
    """The paper's numbers as a series (std 0) for comparison bars."""
    if kind == "b2n":
        ref = paper_numbers.paper_b2n(method)
        return {
            d: {"base": (v[0], 0.0), "new": (v[1], 0.0), "hm": (v[2], 0.0)} for d, v in ref.items()
        }
    return {d: {"accuracy": (v, 0.0)} for d, v in paper_numbers.paper_accuracy(method).items()}


def plot_bars(inputs: list[tuple[str, str, Series]], out: Path, title: str = "") -> Path:
    """Grouped bars: datasets on x, one bar per method, one panel per metric."""
    kinds = {kind for _, kind, _ in inputs}
    if len(kinds) != 1:
        raise ValueError("cannot mix base-to-novel and accuracy results in one figure")
    kind = kinds.pop()
    metrics = ("base", "new", "hm") if kind == "b2n" else ("accuracy",)
    titles = {"base": "Base", "new": "New", "hm": "HM", "accuracy": "Accuracy"}
    datasets = parse_test_res._dataset_order({d for _, _, s in inputs for d in s if d != "Average"})
    if any("Average" in s for _, _, s in inputs):
        datasets.append("Average")
    fig, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(max(6.0, 1.1 * len(datasets) + 2), 3.2 * len(metrics)),
        squeeze=False,
    )
    x = np.arange(len(datasets))
    width = 0.8 / len(inputs)
    for ax, metric in zip(axes[:, 0], metrics):
        for i, (label, _, series) in enumerate(inputs):
            means = [series.get(d, {}).get(metric, (np.nan, 0.0))[0] for d in datasets]
            stds = [series.get(d, {}).get(metric, (np.nan, 0.0))[1] for d in datasets]
            ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=stds, capsize=2, label=label)
        ax.set_ylabel(f"{titles[metric]} (%)")
        ax.set_xticks(x)
        ax.set_xticklabels(
            [paper_numbers.DISPLAY_NAMES.get(d, d) for d in datasets], rotation=30, ha="right"
        )
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize="small", ncol=min(len(inputs), 4))
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def read_metrics(path: Path) -> list[dict]:
    """The JSON records of a metrics.jsonl file; malformed lines (a killed write) skipped."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _num(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def plot_curves(root: Path, out: Path) -> Path:
    """Per-epoch losses, learning rate and test accuracy of every run below ``root``."""
    files = sorted(root.rglob("metrics.jsonl")) if root.is_dir() else [root]
    if not files:
        raise FileNotFoundError(f"no metrics.jsonl below {root}")
    fig, (ax_loss, ax_lr, ax_acc) = plt.subplots(1, 3, figsize=(15, 4))
    plotted = False
    for path in files:
        run = path.parent.relative_to(root).as_posix() if root.is_dir() else path.parent.name
        if run in ("", "."):  # root is the run dir itself
            run = path.parent.name
        losses: dict[str, list[tuple[float, float]]] = {}
        lrs: list[tuple[float, float]] = []
        tests: dict[str, list[tuple[float, float]]] = {}
        for rec in read_metrics(path):
            epoch = _num(rec.get("epoch"))
            if epoch is None:
                continue
            if rec.get("type") == "train":
                for name, value in (rec.get("losses") or {}).items():
                    if (v := _num(value)) is not None:
                        losses.setdefault(name, []).append((epoch, v))
                if (lr := _num(rec.get("lr"))) is not None:
                    lrs.append((epoch, lr))
            elif rec.get("type") == "test":
                acc = _num((rec.get("results") or {}).get("accuracy"))
                if acc is not None:
                    tests.setdefault(str(rec.get("split", "test")), []).append((epoch, acc))
        for name, points in losses.items():
            ax_loss.plot(*zip(*points), marker=".", label=f"{run}: {name}")
            plotted = True
        if lrs:
            ax_lr.plot(*zip(*lrs), marker=".", label=run)
            plotted = True
        for split, points in tests.items():
            ax_acc.plot(*zip(*points), marker="o", label=f"{run}: {split}")
            plotted = True
    if not plotted:
        plt.close(fig)
        raise ValueError(f"no plottable records in {len(files)} metrics.jsonl file(s) below {root}")
    for ax, name in ((ax_loss, "loss"), (ax_lr, "learning rate"), (ax_acc, "accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_domains(root: Path, out: Path, methods: Sequence[str] | None = None) -> Path:
    """Per-domain bars (domains + Mean on x, one bar per method), mean ± std over seeds."""
    from tools.domain_table import collect_domain_rows

    rows = collect_domain_rows(root, parse_test_res.collect(root))
    if methods:
        by_method = {r.method: r for r in rows}
        missing = [m for m in methods if m not in by_method]
        if missing:
            raise KeyError(f"no per-domain runs for {missing}; found {sorted(by_method)}")
        rows = [by_method[m] for m in methods]
    if not rows:
        raise ValueError(f"no run below {root} has per-domain results (results.json 'domains')")
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(9, 3.4 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        group = [r for r in rows if r.dataset == dataset]
        domains = list(dict.fromkeys(d for r in group for d in r.domains))
        x = np.arange(len(domains) + 1)
        width = 0.8 / len(group)
        for i, row in enumerate(group):
            stats = [row.stat(d) for d in domains] + [row.mean_stat()]
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                [m for m, _ in stats],
                width,
                yerr=[s for _, s in stats],
                capsize=2,
                label=row.method,
            )
        ax.set_xticks(x)
        ax.set_xticklabels([*domains, "Mean"])
        ax.set_ylabel("Accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(dataset)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", ncol=min(len(group), 3))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bars = sub.add_parser("bars", help="Base/New/HM (or accuracy) bars per dataset")
    bars.add_argument("inputs", nargs="+", help="sweep dir or parse_test_res JSON, as PATH[=LABEL]")
    bars.add_argument("-o", "--out", type=Path, default=Path("results.png"))
    bars.add_argument("--paper", nargs="?", const="PromptKD", help="add the paper's METHOD row")
    bars.add_argument("--title", default="")
    curves = sub.add_parser("curves", help="training curves from metrics.jsonl files")
    curves.add_argument("root", type=Path, help="a run dir, a sweep dir or a metrics.jsonl")
    curves.add_argument("-o", "--out", type=Path, default=Path("curves.png"))
    domains = sub.add_parser("domains", help="per-domain accuracy bars (multi-domain datasets)")
    domains.add_argument("root", type=Path, help="output tree with per-domain results.json")
    domains.add_argument("-o", "--out", type=Path, default=Path("domains.png"))
    domains.add_argument("--methods", nargs="+", help="only these methods, in this order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        if args.command == "bars":
            inputs = [item for spec in args.inputs for item in load_input(spec)]
            if args.paper:
                kind = inputs[0][1]
                inputs.append((f"paper {args.paper}", kind, paper_series(kind, args.paper)))
            out = plot_bars(inputs, args.out, args.title)
        elif args.command == "domains":
            out = plot_domains(args.root, args.out, args.methods)
        else:
            out = plot_curves(args.root, args.out)
    except (OSError, ValueError, KeyError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
