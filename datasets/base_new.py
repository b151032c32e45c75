"""The base/new class partition used by base-to-novel experiments (one rule, one place).

Classes are split by label order: the first ``ceil(n / 2)`` labels are *base*, the rest *new*
(CoOp/CoCoOp convention, e.g. OxfordPets 19/18, ImageNet 500/500). Selecting a half relabels its
classes from 0 in label order, so a base-class model and a new-class model each see labels
``0..m-1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dassl.data.datasets import Datum
from dassl.utils.logger import get_logger

__all__ = ["SUBSAMPLE_CHOICES", "base_new_ranges", "select_classes", "subsample_classes"]

logger = get_logger(__name__)

#: accepted values of ``DATASET.SUBSAMPLE_CLASSES``
SUBSAMPLE_CHOICES = ("all", "base", "new")


def base_new_ranges(n: int) -> tuple[range, range]:
    """Return ``(base, new)`` label ranges for ``n`` classes: ``[0, ceil(n/2))`` and the rest."""
    if n < 0:
        raise ValueError(f"number of classes must be >= 0, got {n}")
    m = math.ceil(n / 2)
    return range(0, m), range(m, n)


def select_classes(items: Sequence[Datum], class_range: Sequence[int]) -> list[Datum]:
    """Keep the items whose label is in ``class_range`` and relabel them by position in it.

    E.g. ``select_classes(test, range(19, 37))`` gives the new-class test items of OxfordPets
    with labels 0..17. New ``Datum`` objects are returned; the inputs are not modified.
    """
    relabel = {int(y): i for i, y in enumerate(class_range)}
    out = []
    for item in items:
        new_label = relabel.get(item.label)
        if new_label is None:
            continue
        out.append(
            Datum(impath=item.impath, label=new_label, domain=item.domain, classname=item.classname)
        )
    return out


def subsample_classes(
    *splits: Sequence[Datum], subsample: str = "all"
) -> tuple[Sequence[Datum], ...] | list[list[Datum]]:
    """Upstream ``OxfordPets.subsample_classes``: keep the base or new half of the classes.

    The label set is taken from the **first** split (train), sorted; the first ``ceil(n/2)``
    labels are base, the remaining ones new. Every split is filtered to the selected labels and
    relabelled from 0. ``"all"`` returns the splits unchanged (as a tuple, like upstream).
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {list(SUBSAMPLE_CHOICES)}, got {subsample!r}"
        )
    if subsample == "all":
        return splits
    if not splits:
        return []
    labels = sorted({item.label for item in splits[0]})
    base, new = base_new_ranges(len(labels))
    positions = base if subsample == "base" else new
    selected = [labels[i] for i in positions]
    logger.info(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return [select_classes(split, selected) for split in splits]
