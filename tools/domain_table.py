"""Per-domain result tables: domains as columns, methods as rows, mean ± std over seeds.

Runs are found and named as :mod:`tools.parse_test_res` does (``seed<N>`` directories; the
method is the path between the root and the dataset/seed directories). A run contributes when
its ``results.json`` holds ``domains`` (multi-domain datasets, :mod:`datasets.domain_base`);
its ``accuracy`` there is the mean over its target domains. ``±`` is the population std over
seeds (ddof=0, as the rest of the tables); the ``Mean`` column is the mean over domains of each
seed, then averaged over seeds (so its ± is the spread of the per-seed means).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tabulate import tabulate

__all__ = ["DomainRow", "collect_domain_rows", "render_domain_table"]


@dataclass
class DomainRow:
    """One method on one dataset: per-seed accuracies of every domain."""

    method: str
    dataset: str
    domains: list[str]
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)

    def stat(self, domain: str) -> tuple[float, float]:
        values = [s[domain] for s in self.per_seed.values() if domain in s]
        return float(np.mean(values)), float(np.std(values))

    def mean_stat(self) -> tuple[float, float]:
        means = [float(np.mean([s[d] for d in self.domains])) for s in self.per_seed.values()]
        return float(np.mean(means)), float(np.std(means))


def collect_domain_rows(root: Path, runs: Sequence) -> list[DomainRow]:
    """Rows for the runs (``parse_test_res.Run``) whose results.json has per-domain accuracy."""
    rows: dict[tuple[str, str], DomainRow] = {}
    for run in runs:
        path = Path(run.path) / "results.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        domains = data.get("domains") if isinstance(data, dict) else None
        if not isinstance(domains, dict) or not domains:
            continue
        order = data.get("target_domains") or sorted(domains)
        row = rows.setdefault(
            (run.method, run.dataset), DomainRow(run.method, run.dataset, list(order))
        )
        for d in order:
            if d not in row.domains:
                row.domains.append(d)
        row.per_seed[run.seed] = {d: float(a) for d, a in domains.items()}
    return list(rows.values())


def render_domain_table(
    rows: Sequence[DomainRow],
    fmt: str = "text",
    extra: dict[str, dict[str, str]] | None = None,
    reference: str | None = None,
) -> str:
    """One table per dataset; ``extra`` adds columns (``{column: {method: text}}``).

    With ``reference`` (a method), every other row's cells also show the gap to it in points.
    """
    extra = extra or {}
    out = []
    tablefmt = "github" if fmt == "markdown" else "simple"
    for dataset in dict.fromkeys(r.dataset for r in rows):
        group = [r for r in rows if r.dataset == dataset]
        domains = list(dict.fromkeys(d for r in group for d in r.domains))
        ref = next((r for r in group if r.method == reference), None)
        headers = ["Method", *domains, "Mean", *extra, "Seeds"]
        body = []
        for row in group:
            cells = []
            for d in [*domains, None]:
                if d is not None and not any(d in s for s in row.per_seed.values()):
                    cells.append("-")
                    continue
                mean, std = row.stat(d) if d else row.mean_stat()
                cell = f"{mean:.2f} ± {std:.2f}"
                if ref is not None and row is not ref:
                    ref_mean = ref.stat(d)[0] if d else ref.mean_stat()[0]
                    cell += f" ({mean - ref_mean:+.1f})"
                cells.append(cell)
            seeds = ",".join(str(s) for s in sorted(row.per_seed))
            body.append(
                [row.method, *cells, *(extra[c].get(row.method, "-") for c in extra), seeds]
            )
        title = f"### {dataset}" if fmt == "markdown" else f"== {dataset} (per domain) =="
        table = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
        out.append(f"{title}\n{table}\n")
        if ref is not None:
            out.append(f"(in parentheses: points relative to {reference})\n")
    return "\n".join(out)
