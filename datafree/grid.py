"""A PNG grid of synthesized sets: one panel per strategy, rows = classes, columns = samples."""

from __future__ import annotations

import os
from collections.abc import Mapping

from PIL import Image, ImageDraw

from dassl.utils import atomic_write

from .surrogate_set import read_surrogate_set

__all__ = ["write_grid"]


def write_grid(
    path: str,
    folders: Mapping[str, str],
    max_classes: int = 36,
    max_samples: int = 4,
    scale: int = 1,
    gap: int = 6,
) -> str:
    """Write the grid of ``{title: folder}`` to ``path`` (panels side by side)."""
    panels = []
    for title, folder in folders.items():
        meta = read_surrogate_set(folder)
        names = meta["classnames"][:max_classes]
        cells: dict[tuple[int, int], str] = {}
        for rec in meta["images"]:
            n = sum(1 for key in cells if key[0] == rec["label"])
            if rec["label"] < len(names) and n < max_samples:
                cells[(rec["label"], n)] = rec["impath"]
        panels.append((title, names, cells))
    first = next(iter(panels[0][2].values()))
    side = Image.open(first).size[0] * scale
    rows = max(len(p[1]) for p in panels)
    header = 12
    width = len(panels) * (max_samples * side + gap) - gap
    canvas = Image.new("RGB", (width, header + rows * side), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (title, _, cells) in enumerate(panels):
        x0 = k * (max_samples * side + gap)
        draw.text((x0 + 2, 0), title, fill="black")
        for (row, col), impath in cells.items():
            with Image.open(impath) as im:
                tile = im.convert("RGB").resize((side, side), Image.NEAREST)
            canvas.paste(tile, (x0 + col * side, header + row * side))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        canvas.save(f, format="PNG")
    return path
