"""The PromptKD paper's reference numbers (CVPR 2024, arXiv 2403.02781), as data.

Typed from ``shared/docs/promptkd_facts.md`` section 1 (Table 1 and 2 were checked there
against the official repository's result images; Tables 9-11 come from the supplement).
Keys are the datasets' registry names (``DATASET.NAME``) so that tables built from run
directories can be joined with them; ``DISPLAY_NAMES`` gives the paper's column names.

Average rows are stored as printed in the paper. In Table 1 the average Base and Novel are
means over the 11 datasets and the average HM is the harmonic mean of those two means (not
the mean of the per-dataset HMs); ``tests/test_results_parse.py`` recomputes them.
"""

from __future__ import annotations

DATASETS_B2N: tuple[str, ...] = (
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
)
DATASETS_XD: tuple[str, ...] = DATASETS_B2N[1:]
DATASETS_DG: tuple[str, ...] = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")

DISPLAY_NAMES: dict[str, str] = {
    "ImageNet": "ImageNet",
    "Caltech101": "Caltech101",
    "OxfordPets": "OxfordPets",
    "StanfordCars": "StanfordCars",
    "OxfordFlowers": "Flowers102",
    "Food101": "Food101",
    "FGVCAircraft": "FGVCAircraft",
    "SUN397": "SUN397",
    "DescribableTextures": "DTD",
    "EuroSAT": "EuroSAT",
    "UCF101": "UCF101",
    "ImageNetV2": "ImageNet-V2",
    "ImageNetSketch": "ImageNet-Sketch",
    "ImageNetA": "ImageNet-A",
    "ImageNetR": "ImageNet-R",
}

# Table 1: base-to-novel generalisation, ViT-B/16 student; (Base, Novel, HM) per dataset.
TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "CLIP": {
        "Average": (69.34, 74.22, 71.70),
        "ImageNet": (72.43, 68.14, 70.22),
        "Caltech101": (96.84, 94.00, 95.40),
        "OxfordPets": (91.17, 97.26, 94.12),
        "StanfordCars": (63.37, 74.89, 68.65),
        "OxfordFlowers": (72.08, 77.80, 74.83),
        "Food101": (90.10, 91.22, 90.66),
        "FGVCAircraft": (27.19, 36.29, 31.09),
        "SUN397": (69.36, 75.35, 72.23),
        "DescribableTextures": (53.24, 59.90, 56.37),
        "EuroSAT": (56.48, 64.05, 60.03),
        "UCF101": (70.53, 77.50, 73.85),
    },
    "CoOp": {
        "Average": (82.69, 63.22, 71.66),
        "ImageNet": (76.47, 67.88, 71.92),
        "Caltech101": (98.00, 89.81, 93.73),
        "OxfordPets": (93.67, 95.29, 94.47),
        "StanfordCars": (78.12, 60.40, 68.13),
        "OxfordFlowers": (97.60, 59.67, 74.06),
        "Food101": (88.33, 82.26, 85.19),
        "FGVCAircraft": (40.44, 22.30, 28.75),
        "SUN397": (80.60, 65.89, 72.51),
        "DescribableTextures": (79.44, 41.18, 54.24),
        "EuroSAT": (92.19, 54.74, 68.69),
        "UCF101": (84.69, 56.05, 67.46),
    },
    "CoCoOp": {
        "Average": (80.47, 71.69, 75.83),
        "ImageNet": (75.98, 70.43, 73.10),
        "Caltech101": (97.96, 93.81, 95.84),
        "OxfordPets": (95.20, 97.69, 96.43),
        "StanfordCars": (70.49, 73.59, 72.01),
        "OxfordFlowers": (94.87, 71.75, 81.71),
        "Food101": (90.70, 91.29, 90.99),
        "FGVCAircraft": (33.41, 23.71, 27.74),
        "SUN397": (79.74, 76.86, 78.27),
        "DescribableTextures": (77.01, 56.00, 64.85),
        "EuroSAT": (87.49, 60.04, 71.21),
        "UCF101": (82.33, 73.45, 77.64),
    },
    "MaPLe": {
        "Average": (82.28, 75.14, 78.55),
        "ImageNet": (76.66, 70.54, 73.47),
        "Caltech101": (97.74, 94.36, 96.02),
        "OxfordPets": (95.43, 97.76, 96.58),
        "StanfordCars": (72.94, 74.00, 73.47),
        "OxfordFlowers": (95.92, 72.46, 82.56),
        "Food101": (90.71, 92.05, 91.38),
        "FGVCAircraft": (37.44, 35.61, 36.50),
        "SUN397": (80.82, 78.70, 79.75),
        "DescribableTextures": (80.36, 59.18, 68.16),
        "EuroSAT": (94.07, 73.23, 82.35),
        "UCF101": (83.00, 78.66, 80.77),
    },
    "PromptSRC": {
        "Average": (84.26, 76.10, 79.97),
        "ImageNet": (77.60, 70.73, 74.01),
        "Caltech101": (98.10, 94.03, 96.02),
        "OxfordPets": (95.33, 97.30, 96.30),
        "StanfordCars": (78.27, 74.97, 76.58),
        "OxfordFlowers": (98.07, 76.50, 85.95),
        "Food101": (90.67, 91.53, 91.10),
        "FGVCAircraft": (42.73, 37.87, 40.15),
        "SUN397": (82.67, 78.47, 80.52),
        "DescribableTextures": (83.37, 62.97, 71.75),
        "EuroSAT": (92.90, 73.90, 82.32),
        "UCF101": (87.10, 78.80, 82.74),
    },
    "PromptKD": {
        "Average": (86.96, 80.73, 83.73),
        "ImageNet": (80.83, 74.66, 77.62),
        "Caltech101": (98.91, 96.65, 97.77),
        "OxfordPets": (96.30, 98.01, 97.15),
        "StanfordCars": (82.80, 83.37, 83.13),
        "OxfordFlowers": (99.42, 82.62, 90.24),
        "Food101": (92.43, 93.68, 93.05),
        "FGVCAircraft": (49.12, 41.81, 45.17),
        "SUN397": (83.69, 81.54, 82.60),
        "DescribableTextures": (85.84, 71.37, 77.94),
        "EuroSAT": (97.54, 82.08, 89.14),
        "UCF101": (89.71, 82.27, 86.10),
    },
}

# Table 2: cross-dataset top-1 (ImageNet-trained source; PromptKD distils on each target's
# unlabelled train split). "Average" is over the 10 targets.
_XD_ORDER = DATASETS_XD + ("Average",)
TABLE2: dict[str, dict[str, float]] = {
    method: dict(zip(_XD_ORDER, row, strict=True))
    for method, row in {
        "CoOp": (93.70, 89.14, 64.51, 68.71, 85.30, 18.47, 64.15, 41.92, 46.39, 66.55, 63.88),
        "CoCoOp": (94.43, 90.14, 65.32, 71.88, 86.06, 22.94, 67.36, 45.73, 45.37, 68.21, 65.74),
        "MaPLe": (93.53, 90.49, 65.57, 72.23, 86.20, 24.74, 67.01, 46.49, 48.06, 68.69, 66.30),
        "PromptSRC": (93.60, 90.25, 65.70, 70.25, 86.15, 23.90, 67.10, 46.87, 45.50, 68.75, 65.81),
        "PromptKD": (93.61, 91.59, 73.93, 75.33, 88.84, 26.24, 68.57, 55.08, 63.74, 76.39, 71.33),
    }.items()
}

# Supplementary Table 9: domain generalisation, ImageNet source -> V2 / Sketch / A / R.
_DG_ORDER = DATASETS_DG + ("Average",)
TABLE9: dict[str, dict[str, float]] = {
    method: dict(zip(_DG_ORDER, row, strict=True))
    for method, row in {
        "CLIP": (60.83, 46.15, 47.77, 73.96, 57.18),
        "CoOp": (64.20, 47.99, 49.71, 75.21, 59.28),
        "CoCoOp": (64.07, 48.75, 50.63, 76.18, 59.91),
        "MaPLe": (64.07, 49.15, 50.90, 76.98, 60.27),
        "PromptSRC": (64.35, 49.55, 50.90, 77.80, 60.65),
        "TPT": (63.45, 47.94, 54.77, 77.06, 60.81),
        "CoOp+TPT": (66.83, 49.29, 57.95, 77.27, 62.83),
        "CoCoOp+TPT": (64.85, 48.47, 58.47, 78.65, 62.61),
        "PromptAlign": (65.29, 50.23, 59.37, 79.33, 63.55),
        "PromptKD": (69.77, 58.72, 70.36, 87.01, 71.47),
    }.items()
}

# Supplementary Table 10: the ViT-L/14 PromptSRC base-to-novel teachers, (Base, Novel, HM).
TABLE10: dict[str, tuple[float, float, float]] = {
    "ImageNet": (83.24, 76.83, 79.91),
    "Caltech101": (98.71, 98.03, 98.37),
    "OxfordPets": (96.86, 98.82, 97.83),
    "StanfordCars": (84.53, 84.25, 84.39),
    "OxfordFlowers": (99.05, 82.60, 90.08),
    "Food101": (94.56, 95.15, 94.85),
    "FGVCAircraft": (54.44, 43.07, 48.09),
    "SUN397": (84.97, 81.09, 82.98),
    "DescribableTextures": (85.76, 70.65, 77.48),
    "EuroSAT": (94.79, 83.15, 88.59),
    "UCF101": (89.50, 82.26, 85.73),
}

# Supplementary Table 11 (arXiv version): the ImageNet-trained cross-dataset teacher, top-1.
# "Average" is over the 10 targets (ImageNet is the source).
TABLE11: dict[str, float] = {
    "ImageNet": 78.12,
    "Caltech101": 95.61,
    "OxfordPets": 94.19,
    "StanfordCars": 77.70,
    "OxfordFlowers": 77.54,
    "Food101": 91.59,
    "FGVCAircraft": 31.29,
    "SUN397": 70.86,
    "DescribableTextures": 56.32,
    "EuroSAT": 47.55,
    "UCF101": 76.20,
    "Average": 71.89,
}


def paper_b2n(method: str = "PromptKD") -> dict[str, tuple[float, float, float]]:
    """Table 1 rows of ``method``; ``"teacher"`` gives Table 10. Raises KeyError with choices."""
    if method.lower() == "teacher":
        return dict(TABLE10)
    if method not in TABLE1:
        raise KeyError(f"no Table 1 row for {method!r}; choose from {sorted(TABLE1)} or 'teacher'")
    return TABLE1[method]


def paper_accuracy(method: str = "PromptKD") -> dict[str, float]:
    """Top-1 accuracies of ``method`` over Table 2 and Table 9 targets (``"teacher"``: Table 11).

    The two tables have disjoint datasets except their "Average" rows, which are dropped here
    because they average different dataset sets.
    """
    if method.lower() == "teacher":
        return {k: v for k, v in TABLE11.items() if k != "Average"}
    if method not in TABLE2 and method not in TABLE9:
        choices = sorted(set(TABLE2) | set(TABLE9))
        raise KeyError(f"no Table 2/9 row for {method!r}; choose from {choices} or 'teacher'")
    out: dict[str, float] = {}
    for table in (TABLE2, TABLE9):
        out.update({k: v for k, v in table.get(method, {}).items() if k != "Average"})
    return out
