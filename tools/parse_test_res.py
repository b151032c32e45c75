"""Collect the results of a sweep's output tree into Base / New / HM (or accuracy) tables.

Usage::

    python tools/parse_test_res.py output/base2novel
    python tools/parse_test_res.py output --format markdown --paper
    python tools/parse_test_res.py output/base2new --keyword accuracy --test-log

How runs are found: every directory named ``seed<N>`` or ``seed_<N>`` below DIR (any depth) is
one run. Its result comes from ``results.json`` (written by this repository's trainers:
``base``/``new`` for base-to-novel, ``accuracy`` otherwise) or, when that is missing, from the
Dassl log, parsed exactly as CoOp's ``parse_test_res.py`` does: lines are stripped, matches of
``* <keyword>: <x>%`` count only after the end signal line, the last match wins. The end signal
is ``=> result`` with ``--test-log``; without it ``Finish training`` when the log has that line,
else ``=> result`` (an eval-only log, as CoOp's ``test_new`` runs write). ``log.txt`` and the
timestamped ``log.txt-<time>`` files of reruns are read newest first.

Grouping: a run's dataset is the ``dataset`` of results.json, else the path component naming a
known dataset (registry or config name), else the first path component below DIR. Its method
is the rest of the path between DIR and the seed directory. CoOp's base-to-new layout
(``base2new/train_base/<dataset>/.../seed1`` and ``base2new/test_new/<dataset>/.../seed1``) is
paired: ``train_base``/``test_base`` runs give Base, ``test_new`` runs give New.

Statistics (the CoOp-family convention, as in the paper's Table 1):
- per dataset, Base and New are means over seeds; HM = harmonic mean of those two means;
- the average row: Base and New are means over datasets, HM = HM(average Base, average New),
  NOT the mean of the per-dataset HMs;
- ``±`` is the population standard deviation over seeds (``numpy.std``, ddof=0, as CoOp's
  parser prints); for HM it is the spread of the per-seed HMs and for the average row the
  spread of the per-seed averages.
Incomplete data is reported, never averaged silently: a dataset lacking any of the method's
seeds (the union of seeds seen for that method, or ``--seeds``) is listed with its missing
seeds and left out of the average row, whose label then says how many datasets it covers.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

try:  # run as `python tools/parse_test_res.py` or imported as `tools.parse_test_res`
    from tools import paper_numbers
except ImportError:  # pragma: no cover - script run from another directory
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tools import paper_numbers

logger = logging.getLogger("parse_test_res")

SEED_DIR = re.compile(r"^seed_?(\d+)$")
FINISH_SIGNAL = "Finish training"
TEST_SIGNAL = "=> result"
ROLE_DIRS = {"train_base": "base", "test_base": "base", "test_new": "new"}
XD_SUFFIX = "-xd"  # upstream names the ImageNet cross-dataset teacher "ImageNet-xd"
# Trainer or path names -> the paper's row (Tables 1/2/9; "teacher": Tables 10/11).
PAPER_METHODS = {
    "promptkd": "PromptKD",
    "promptkdstudent": "PromptKD",
    "promptkdteacher": "teacher",
    "teacher": "teacher",
    "zeroshotclip": "CLIP",
    "zsclip": "CLIP",
    "clip": "CLIP",
    "coop": "CoOp",
    "cocoop": "CoCoOp",
    "maple": "MaPLe",
    "promptsrc": "PromptSRC",
}
COMMON_SH = Path(__file__).resolve().parent.parent / "scripts" / "promptkd" / "common.sh"
# Multi-domain datasets (not in the sweep table): config name -> registry name.
DOMAIN_DATASETS = {
    "toy_shapes_dg": "ToyShapesDG",
    "pacs": "PACS",
    "vlcs": "VLCS",
    "imageclef_da": "ImageCLEFDA",
    "visda17": "VisDA17",
}


def load_dataset_names(common_sh: Path = COMMON_SH) -> dict[str, str]:
    """Map config names and registry names (lower-cased) to registry names.

    Read from the one per-dataset table in ``scripts/promptkd/common.sh`` so the names are not
    kept twice; the paper's registry names are always known.
    """
    names = {name.lower(): name for name in paper_numbers.DISPLAY_NAMES}
    for config_name, name in DOMAIN_DATASETS.items():
        names[config_name] = names[name.lower()] = name
    if common_sh.is_file():
        text = common_sh.read_text()
        match = re.search(r'PKD_DATASET_TABLE="(.*?)"', text, re.S)
        if match:
            for line in match.group(1).splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    names[parts[0].lower()] = parts[1]
                    names[parts[1].lower()] = parts[1]
    return names


def harmonic_mean(a: float, b: float) -> float:
    """HM of two accuracies; 0 when both are 0."""
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def parse_log_text(
    text: str, keyword: str = "accuracy", end_signal: str = FINISH_SIGNAL
) -> float | None:
    """CoOp's rule: the last ``* <keyword>: x%`` after a line equal to ``end_signal``."""
    pattern = re.compile(r"\* " + re.escape(keyword) + r": ([\.\deE+-]+)%")
    started = False
    value = None
    for raw in text.splitlines():
        line = raw.strip()
        if line == end_signal:
            started = True
        if not started:
            continue
        match = pattern.search(line)
        if match:
            value = float(match.group(1))
    return value


def log_files(run_dir: Path) -> list[Path]:
    """``log.txt-<timestamp>`` files newest first, then ``log.txt`` (the first run's log)."""
    stamped = sorted(run_dir.glob("log.txt-*"), reverse=True)
    plain = [run_dir / "log.txt"] if (run_dir / "log.txt").is_file() else []
    return stamped + plain


def parse_run_log(run_dir: Path, keyword: str = "accuracy", test_log: bool = False) -> float | None:
    """The accuracy (or other keyword) of a run from its Dassl log(s), None if absent."""
    for path in log_files(run_dir):
        text = path.read_text(errors="replace")
        if test_log:
            signal = TEST_SIGNAL
        else:
            has_finish = any(line.strip() == FINISH_SIGNAL for line in text.splitlines())
            signal = FINISH_SIGNAL if has_finish else TEST_SIGNAL
        value = parse_log_text(text, keyword, signal)
        if value is not None:
            return value
    return None


@dataclass
class Run:
    """One ``seed*`` directory and what it yielded."""

    path: Path
    method: str
    dataset: str
    seed: int
    role: str | None = None  # "base" / "new" for CoOp's split base-to-new runs
    trainer: str = ""
    base: float | None = None
    new: float | None = None
    accuracy: float | None = None
    source: str = ""

    @property
    def has_result(self) -> bool:
        return self.base is not None or self.new is not None or self.accuracy is not None


def find_run_dirs(root: Path) -> list[Path]:
    """Every ``seed<N>``/``seed_<N>`` directory below (or equal to) root; not inside runs."""
    if SEED_DIR.match(root.name):
        return [root]
    found = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        if SEED_DIR.match(path.name):
            found.append(path)
        else:
            found.extend(find_run_dirs(path))
    return found


def _results_json(run_dir: Path) -> dict | None:
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("unreadable %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run(root: Path, run_dir: Path, names: dict[str, str], keyword: str, test_log: bool) -> Run:
    """Identify a run's method/dataset/seed/role from its path and read its result."""
    seed = int(SEED_DIR.match(run_dir.name).group(1))
    rel = run_dir.parent.relative_to(root).parts if run_dir != root else ()
    data = _results_json(run_dir) if keyword == "accuracy" else None

    dataset = None
    if data and isinstance(data.get("dataset"), str):
        dataset = names.get(data["dataset"].lower(), data["dataset"])
    dataset_index = None
    xd = False
    for i in range(len(rel) - 1, -1, -1):
        part = rel[i].lower()
        if part.endswith(XD_SUFFIX) and part[: -len(XD_SUFFIX)] in names:
            part, xd = part[: -len(XD_SUFFIX)], True
        if part in names:
            dataset_index = i
            dataset = dataset or names[part]
            break
    if dataset is None:
        dataset = rel[0] if rel else (run_dir.parent.name or "?")
        dataset_index = 0 if rel else None
    role = None
    method_parts = []
    for i, part in enumerate(rel):
        if i == dataset_index:
            if xd:
                method_parts.append("xd")
            continue
        if part in ROLE_DIRS:
            role = ROLE_DIRS[part]
            continue
        method_parts.append(part)
    method = "/".join(method_parts)
    if not method:
        method = str(data.get("trainer")) if data and data.get("trainer") else root.name or "run"

    trainer = str(data["trainer"]) if data and data.get("trainer") else ""
    run = Run(path=run_dir, method=method, dataset=dataset, seed=seed, role=role, trainer=trainer)
    if data is not None:
        run.base, run.new = _number(data.get("base")), _number(data.get("new"))
        run.accuracy = _number(data.get("accuracy"))
        run.source = "results.json"
    if not run.has_result:
        value = parse_run_log(run_dir, keyword, test_log)
        if value is not None:
            run.source = "log"
            if role == "base":
                run.base = value
            elif role == "new":
                run.new = value
            else:
                run.accuracy = value
    if run.has_result and role is not None and run.source == "results.json":
        # A split CoOp-style run that wrote results.json: its accuracy is the role's number.
        if run.accuracy is not None:
            if role == "base" and run.base is None:
                run.base = run.accuracy
            if role == "new" and run.new is None:
                run.new = run.accuracy
            run.accuracy = None
    return run


@dataclass
class Stat:
    mean: float
    std: float

    def cell(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _stat(values: Sequence[float]) -> Stat:
    return Stat(float(np.mean(values)), float(np.std(values)))


@dataclass
class Row:
    """One dataset (or the average) of one method."""

    method: str
    dataset: str
    kind: str  # "b2n" or "accuracy"
    seeds: list[int] = field(default_factory=list)
    base: Stat | None = None
    new: Stat | None = None
    hm: Stat | None = None
    accuracy: Stat | None = None
    missing_seeds: list[int] = field(default_factory=list)
    partial_runs: list[str] = field(default_factory=list)
    per_seed: dict[int, tuple[float, ...]] = field(default_factory=dict)
    average_over: list[str] = field(default_factory=list)  # average row only
    excluded: list[str] = field(default_factory=list)  # average row only
    paper: tuple[float, ...] | None = None

    @property
    def complete(self) -> bool:
        return not self.missing_seeds and bool(self.seeds)


@dataclass
class MethodTable:
    method: str
    kind: str
    expected_seeds: list[int]
    rows: list[Row]
    average: Row | None
    paper_note: str = ""
    paper_method: str = ""


def _merge_runs(runs: list[Run]) -> dict[tuple[str, str, int], dict]:
    """Merge split (base / new) runs of the same method, dataset and seed."""
    merged: dict[tuple[str, str, int], dict] = {}
    for run in runs:
        entry = merged.setdefault(
            (run.method, run.dataset, run.seed),
            {"base": None, "new": None, "accuracy": None, "paths": []},
        )
        entry["paths"].append(run)
        for key in ("base", "new", "accuracy"):
            value = getattr(run, key)
            if value is None:
                continue
            # test_base beats train_base: the eval-only number is the deliberate one.
            if entry[key] is None or "test_base" in run.path.parts:
                entry[key] = value
    return merged


def build_tables(
    runs: list[Run],
    seeds: Sequence[int] | None = None,
    paper_method: str | None = None,
) -> list[MethodTable]:
    """Aggregate runs into one table per method (see the module docstring for the rules)."""
    merged = _merge_runs(runs)
    methods = sorted({m for m, _, _ in merged})
    tables = []
    for method in methods:
        keys = [k for k in merged if k[0] == method]
        is_b2n = any(merged[k]["base"] is not None or merged[k]["new"] is not None for k in keys)
        kind = "b2n" if is_b2n else "accuracy"
        expected = sorted(set(seeds) if seeds else {k[2] for k in keys})
        datasets = _dataset_order({k[1] for k in keys})
        rows = []
        for dataset in datasets:
            row = Row(method=method, dataset=dataset, kind=kind)
            for _, _, seed in sorted(k for k in keys if k[1] == dataset):
                entry = merged[(method, dataset, seed)]
                if kind == "b2n":
                    ok = entry["base"] is not None and entry["new"] is not None
                    values = (entry["base"], entry["new"]) if ok else None
                else:
                    ok = entry["accuracy"] is not None
                    values = (entry["accuracy"],) if ok else None
                if ok and seed in expected:
                    row.per_seed[seed] = values
                elif not ok:
                    for run in entry["paths"]:
                        what = "no result" if not run.has_result else "only one of base/new"
                        row.partial_runs.append(f"{run.path} ({what})")
            row.seeds = sorted(row.per_seed)
            row.missing_seeds = [s for s in expected if s not in row.per_seed]
            _fill_stats(row)
            rows.append(row)
        average = _average_row(method, kind, rows, expected)
        table = MethodTable(method, kind, expected, rows, average)
        if paper_method:
            trainers = {run.trainer for k in keys for run in merged[k]["paths"] if run.trainer}
            chosen = (
                paper_method if paper_method != "auto" else guess_paper_method(method, trainers)
            )
            table.paper_method = chosen
            _attach_paper(table, chosen)
        tables.append(table)
    return tables


def guess_paper_method(method: str, trainers: set[str] = frozenset()) -> str:
    """The paper row a method corresponds to: by trainer name, then path part; else PromptKD."""
    for name in sorted(trainers):
        if name.lower() in PAPER_METHODS:
            return PAPER_METHODS[name.lower()]
    for part in reversed(method.split("/")):
        if part.lower() in PAPER_METHODS:
            return PAPER_METHODS[part.lower()]
    return "PromptKD"


def _dataset_order(datasets: set[str]) -> list[str]:
    """Paper order for known datasets, then the rest alphabetically."""
    order = {name: i for i, name in enumerate(paper_numbers.DISPLAY_NAMES)}
    return sorted(datasets, key=lambda d: (order.get(d, len(order)), d))


def _fill_stats(row: Row) -> None:
    if not row.per_seed:
        return
    values = np.array([row.per_seed[s] for s in row.seeds], dtype=float)
    if row.kind == "b2n":
        row.base, row.new = _stat(values[:, 0]), _stat(values[:, 1])
        hms = [harmonic_mean(b, n) for b, n in values]
        row.hm = Stat(harmonic_mean(row.base.mean, row.new.mean), float(np.std(hms)))
    else:
        row.accuracy = _stat(values[:, 0])


def _average_row(method: str, kind: str, rows: list[Row], expected: list[int]) -> Row | None:
    included = [r for r in rows if r.complete]
    if not included:
        return None
    avg = Row(method=method, dataset="Average", kind=kind, seeds=list(expected))
    avg.average_over = [r.dataset for r in included]
    avg.excluded = [r.dataset for r in rows if not r.complete]
    # Per seed: the mean over datasets of that seed's numbers (for the ± column).
    for seed in expected:
        stacked = np.array([r.per_seed[seed] for r in included], dtype=float)
        avg.per_seed[seed] = tuple(stacked.mean(axis=0))
    if kind == "b2n":
        base = float(np.mean([r.base.mean for r in included]))
        new = float(np.mean([r.new.mean for r in included]))
        per_seed = np.array([avg.per_seed[s] for s in expected])
        avg.base = Stat(base, float(np.std(per_seed[:, 0])))
        avg.new = Stat(new, float(np.std(per_seed[:, 1])))
        hms = [harmonic_mean(b, n) for b, n in per_seed]
        avg.hm = Stat(harmonic_mean(base, new), float(np.std(hms)))
    else:
        acc = float(np.mean([r.accuracy.mean for r in included]))
        per_seed = [avg.per_seed[s][0] for s in expected]
        avg.accuracy = Stat(acc, float(np.std(per_seed)))
    return avg


def _attach_paper(table: MethodTable, paper_method: str) -> None:
    """Reference numbers per row; the paper's average recomputed over the same datasets."""
    if table.kind == "b2n":
        ref = paper_numbers.paper_b2n(paper_method)
        for row in table.rows:
            row.paper = ref.get(row.dataset)
        if table.average is not None:
            over = table.average.average_over
            known = [d for d in over if d in ref]
            if known and len(known) == len(over):
                if set(known) == set(paper_numbers.DATASETS_B2N) and "Average" in ref:
                    table.average.paper = ref["Average"]
                    table.paper_note = f"paper: {paper_method}, average of all 11 datasets"
                else:
                    b = float(np.mean([ref[d][0] for d in known]))
                    n = float(np.mean([ref[d][1] for d in known]))
                    table.average.paper = (b, n, harmonic_mean(b, n))
                    table.paper_note = (
                        f"paper average recomputed over the same {len(known)} datasets "
                        f"({paper_method}; the paper's own average covers 11)"
                    )
    else:
        ref = paper_numbers.paper_accuracy(paper_method)
        for row in table.rows:
            row.paper = (ref[row.dataset],) if row.dataset in ref else None
        if table.average is not None:
            over = table.average.average_over
            if over and all(d in ref for d in over):
                table.average.paper = (float(np.mean([ref[d] for d in over])),)
                table.paper_note = f"paper: {paper_method}, average over the same datasets"


# ----------------------------------------------------------------------------- output


def _average_label(avg: Row, total: int) -> str:
    if not avg.excluded:
        return "Average"
    return f"Average ({len(avg.average_over)} of {total} datasets)"


def _text_rows(table: MethodTable, with_paper: bool) -> tuple[list[str], list[list[str]]]:
    if table.kind == "b2n":
        headers = ["Dataset", "Base", "New", "HM", "Seeds"]
        if with_paper:
            headers += [f"Paper {table.paper_method} B / N / HM"]
    else:
        headers = ["Dataset", "Accuracy", "Seeds"]
        if with_paper:
            headers += [f"Paper {table.paper_method}"]
    n_expected = len(table.expected_seeds)
    body = []
    rows = list(table.rows) + ([table.average] if table.average is not None else [])
    for row in rows:
        is_avg = row is table.average
        label = _average_label(row, len(table.rows)) if is_avg else row.dataset
        seeds = f"{len(row.seeds)}/{n_expected}"
        if table.kind == "b2n":
            cells = [_cell(row.base), _cell(row.new), _cell(row.hm)]
        else:
            cells = [_cell(row.accuracy)]
        line = [label, *cells, seeds]
        if with_paper:
            line.append(" / ".join(f"{v:.2f}" for v in row.paper) if row.paper else "-")
        body.append(line)
    return headers, body


def _cell(stat: Stat | None) -> str:
    return "-" if stat is None else stat.cell()


def _notes(table: MethodTable) -> list[str]:
    notes = []
    for row in table.rows:
        if row.missing_seeds:
            notes.append(f"{row.dataset}: missing seed(s) {', '.join(map(str, row.missing_seeds))}")
        for partial in row.partial_runs:
            notes.append(f"{row.dataset}: run without a complete result: {partial}")
    if table.average is None:
        notes.append("no dataset has all seeds: no average row")
    elif table.average.excluded:
        notes.append(
            f"average over {len(table.average.average_over)} complete dataset(s); "
            f"excluded (incomplete): {', '.join(table.average.excluded)}"
        )
    if table.paper_note:
        notes.append(table.paper_note)
    return notes


def _row_dict(row: Row, table: MethodTable) -> dict:
    out = {"method": row.method, "dataset": row.dataset}
    for key in ("base", "new", "hm", "accuracy"):
        stat = getattr(row, key)
        out[key] = None if stat is None else round(stat.mean, 4)
    for key in ("base", "new", "hm", "accuracy"):
        stat = getattr(row, key)
        out[f"{key}_std"] = None if stat is None else round(stat.std, 4)
    out["seeds"] = row.seeds
    out["missing_seeds"] = row.missing_seeds
    if row is table.average:
        out["average_over"] = row.average_over
        out["excluded"] = row.excluded
    else:
        out["partial_runs"] = row.partial_runs
    if row.paper is not None:
        keys = (
            ("paper_base", "paper_new", "paper_hm") if table.kind == "b2n" else ("paper_accuracy",)
        )
        out.update({k: round(v, 4) for k, v in zip(keys, row.paper)})
    return out


def render(tables: list[MethodTable], fmt: str = "text", with_paper: bool = False) -> str:
    """The tables in one of text | markdown | csv | json."""
    if fmt == "json":
        rows = []
        for table in tables:
            for row in table.rows + ([table.average] if table.average is not None else []):
                rows.append(_row_dict(row, table))
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        fields = ["method", "dataset", "base", "new", "hm", "accuracy"]
        fields += ["base_std", "new_std", "hm_std", "accuracy_std", "seeds", "missing_seeds"]
        if with_paper:
            fields += ["paper_base", "paper_new", "paper_hm", "paper_accuracy"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for table in tables:
            for row in table.rows + ([table.average] if table.average is not None else []):
                record = _row_dict(row, table)
                record["seeds"] = " ".join(map(str, record["seeds"]))
                record["missing_seeds"] = " ".join(map(str, record["missing_seeds"]))
                writer.writerow(record)
        return buf.getvalue()
    tablefmt = "github" if fmt == "markdown" else "simple"
    parts = []
    for table in tables:
        headers, body = _text_rows(table, with_paper)
        title = f"{table.method} ({'base-to-novel' if table.kind == 'b2n' else 'accuracy'})"
        parts.append(f"### {title}" if fmt == "markdown" else f"== {title} ==")
        parts.append(tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True))
        for note in _notes(table):
            parts.append(f"- {note}" if fmt == "markdown" else f"note: {note}")
        parts.append("")
    if len(tables) > 1:
        parts.append(_comparison(tables, tablefmt, fmt))
    return "\n".join(parts).rstrip("\n") + "\n"


def render_compact(tables: list[MethodTable], fmt: str = "text") -> str:
    """One table, one row per (method, dataset): Base / New / HM (or accuracy), mean ± std.

    The methods keep the order of ``tables``; a dataset's row appears for every method that has
    it (the average row only when a method covers several datasets).
    """
    headers = ["Method", "Dataset", "Base", "New", "HM", "Accuracy", "Seeds"]
    body = []
    notes = []
    for table in tables:
        rows = list(table.rows)
        if table.average is not None and len(table.rows) > 1:
            rows.append(table.average)
        n_expected = len(table.expected_seeds)
        for row in rows:
            cells = [_cell(getattr(row, k)) for k in ("base", "new", "hm", "accuracy")]
            # Same counts and labels as the per-method tables: seeds with a result / expected.
            label = _average_label(row, len(table.rows)) if row is table.average else row.dataset
            body.append([table.method, label, *cells, f"{len(row.seeds)}/{n_expected}"])
        notes.extend(f"{table.method}: {note}" for note in _notes(table))
    keep = [i for i in range(len(headers)) if i < 2 or i == 6 or any(r[i] != "-" for r in body)]
    headers = [headers[i] for i in keep]
    body = [[r[i] for i in keep] for r in body]
    tablefmt = "github" if fmt == "markdown" else "simple"
    out = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True) + "\n"
    if notes:
        prefix = "- " if fmt == "markdown" else "note: "
        out += "\n" + "".join(f"{prefix}{note}\n" for note in notes)
    return out


def order_tables(tables: list[MethodTable], methods: Sequence[str] | None) -> list[MethodTable]:
    """Keep only ``methods`` (in that order) when given; unknown names are an error."""
    if not methods:
        return tables
    by_name = {t.method: t for t in tables}
    unknown = [m for m in methods if m not in by_name]
    if unknown:
        raise KeyError(f"no runs for method(s) {unknown}; found {sorted(by_name)}")
    return [by_name[m] for m in methods]


def _comparison(tables: list[MethodTable], tablefmt: str, fmt: str) -> str:
    """Methods side by side: HM (base-to-novel) or accuracy per dataset."""
    datasets = _dataset_order({r.dataset for t in tables for r in t.rows})
    headers = ["Dataset"] + [f"{t.method} {'HM' if t.kind == 'b2n' else 'Acc'}" for t in tables]
    body = []
    for dataset in [*datasets, "Average"]:
        line = [dataset]
        for table in tables:
            if dataset == "Average":
                row = table.average
            else:
                row = next((r for r in table.rows if r.dataset == dataset), None)
            stat = None if row is None else (row.hm if table.kind == "b2n" else row.accuracy)
            line.append("-" if stat is None else f"{stat.mean:.2f}")
        body.append(line)
    title = "### Side by side" if fmt == "markdown" else "== side by side =="
    table = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    return f"{title}\n{table}\n"


def collect(root: Path, keyword: str = "accuracy", test_log: bool = False) -> list[Run]:
    """Every run below ``root`` with its result (or none)."""
    names = load_dataset_names()
    return [read_run(root, d, names, keyword, test_log) for d in find_run_dirs(root)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Tables of Base/New/HM (or accuracy) over seeds from a sweep's output tree.",
        epilog="Average HM = HM of the averaged Base and New (the paper's convention); "
        "± = population std over seeds (ddof=0, as CoOp).",
    )
    parser.add_argument("directory", type=Path, help="output tree (any depth of seed*/ runs)")
    parser.add_argument("--format", choices=["text", "markdown", "csv", "json"], default="text")
    parser.add_argument("--paper", action="store_true", help="add the paper's numbers")
    parser.add_argument(
        "--paper-method",
        default="auto",
        help="paper row to compare with: a Table 1/2/9 method, 'teacher' (Tables 10/11), or "
        "'auto' (default: from the trainer or path, e.g. CoOp, ZeroshotCLIP -> CLIP, "
        "teacher runs -> teacher; otherwise PromptKD)",
    )
    parser.add_argument(
        "--keyword", default="accuracy", help="log metric (accuracy, error, macro_f1)"
    )
    parser.add_argument(
        "--test-log", action="store_true", help="logs are eval-only: end signal '=> result'"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="expected seeds (default: all seen)")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any run or seed is missing"
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="text/markdown: one table with a row per method and dataset",
    )
    parser.add_argument(
        "--methods", nargs="+", help="only these methods (path below DIR), in this order"
    )
    parser.add_argument(
        "--domains",
        action="store_true",
        help="text/markdown: per-domain table (domains as columns, methods as rows) of the runs "
        "whose results.json has per-domain accuracy (PACS, VLCS, ToyShapesDG, ...)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the tables; 0 on success, 1 when nothing was found (or --strict and incomplete)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if not args.directory.is_dir():
        logger.error("not a directory: %s", args.directory)
        return 1
    runs = collect(args.directory, args.keyword, args.test_log)
    if not runs:
        logger.error("no seed*/ run directories below %s", args.directory)
        return 1
    if args.keyword != "accuracy":
        logger.info("--keyword %s: results.json ignored, reading logs only", args.keyword)
    try:
        tables = build_tables(runs, args.seeds, args.paper_method if args.paper else None)
        tables = order_tables(tables, args.methods)
    except KeyError as exc:
        logger.error("%s", exc.args[0])
        return 1
    if args.format in ("csv", "json"):
        for table in tables:  # stdout stays machine-readable; the notes go to stderr
            for note in _notes(table):
                logger.warning("%s: %s", table.method, note)
    if args.domains:
        from tools.domain_table import collect_domain_rows, render_domain_table

        kept = {t.method for t in tables}
        rows = [r for r in collect_domain_rows(args.directory, runs) if r.method in kept]
        order = {t.method: i for i, t in enumerate(tables)}
        rows.sort(key=lambda r: order[r.method])
        if not rows:
            logger.error("no run below %s has per-domain results", args.directory)
            return 1
        sys.stdout.write(render_domain_table(rows, args.format))
    elif args.compact and args.format in ("text", "markdown"):
        sys.stdout.write(render_compact(tables, args.format))
    else:
        sys.stdout.write(render(tables, args.format, args.paper))
    incomplete = any(r.missing_seeds or r.partial_runs for t in tables for r in t.rows)
    if args.strict and incomplete:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
