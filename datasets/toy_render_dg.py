"""Four rendered domains of the toy world, in the spirit of PACS (photo / art / cartoon / sketch).

The same 36 ``"<colour> <shape>"`` classes as :mod:`datasets.toy_render`, drawn in four styles:

* ``photo`` -- the textured ``"downstream"`` domain of ToyShapes (stripes, checkerboards,
  blotches, hue/contrast shifts, noise);
* ``smooth`` -- the ``"pretrain"`` domain the toy CLIPs were pretrained on (smooth gradients);
* ``sketch`` -- outline strokes only, in the object's colour, on near-white paper, no fill;
* ``cartoon`` -- a flat fill with a thick dark border on a flat background, no noise.

``photo`` and ``smooth`` call :func:`datasets.toy_render.render_batch` unchanged; the two new
styles reuse its shapes and colours. Rendering is vectorised and fully determined by the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np

from .toy_render import (
    _COLOUR_TABLE,
    _EXTENT,
    _LABEL_COLOUR,
    _LABEL_SHAPE,
    _MAX_ROTATION,
    CLASSNAMES,
    SHAPES,
    _shape_mask,
    render_batch,
)

__all__ = ["DG_DOMAINS", "render_domain"]

DG_DOMAINS: tuple[str, ...] = ("photo", "smooth", "sketch", "cartoon")
_BORROWED = {"photo": "downstream", "smooth": "pretrain"}
# Stroke widths in pixels of the 2x supersampled canvas (halved in the output image).
_SKETCH_STROKE = 3
_CARTOON_BORDER = 4


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by ``steps`` pixels (4-neighbourhood), per image of a (N, H, W) batch."""
    for _ in range(steps):
        p = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
        mask = (
            p[:, 1:-1, 1:-1] & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
        )
    return mask


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by ``steps`` pixels (4-neighbourhood), per image of a (N, H, W) batch."""
    for _ in range(steps):
        p = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
        mask = (
            p[:, 1:-1, 1:-1] | p[:, :-2, 1:-1] | p[:, 2:, 1:-1] | p[:, 1:-1, :-2] | p[:, 1:-1, 2:]
        )
    return mask


def _geometry(labels: np.ndarray, rng: np.random.Generator, hi: int):
    """Object masks (N, hi, hi) and jittered colours (N, 3), as the photo domain places them."""
    n = labels.shape[0]
    large = rng.random(n) < 0.5
    radius = np.where(large, rng.uniform(0.40, 0.55, n), rng.uniform(0.28, 0.38, n))
    margin = 1.0 - _EXTENT * radius
    cx = rng.uniform(-1, 1, n) * margin
    cy = rng.uniform(-1, 1, n) * margin
    rot = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, n)
    colour = _COLOUR_TABLE[_LABEL_COLOUR[labels]] + rng.uniform(-0.06, 0.06, (n, 3))
    colour = np.clip(colour, 0.0, 1.0).astype(np.float32)
    f32 = np.float32
    coords = ((np.arange(hi) + 0.5) / hi * 2 - 1).astype(f32)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    inv_r = (1.0 / radius).astype(f32)[:, None, None]
    dx = (x[None] - cx.astype(f32)[:, None, None]) * inv_r
    dy = (y[None] - cy.astype(f32)[:, None, None]) * inv_r
    cr, sr = np.cos(rot).astype(f32)[:, None, None], np.sin(rot).astype(f32)[:, None, None]
    u, v = cr * dx + sr * dy, -sr * dx + cr * dy
    mask = np.zeros((n, hi, hi), dtype=bool)
    shape_idx = _LABEL_SHAPE[labels]
    for k, shape in enumerate(SHAPES):
        sel = np.nonzero(shape_idx == k)[0]
        if sel.size:
            mask[sel] = _shape_mask(shape, u[sel], v[sel])
    return mask, colour


def render_domain(
    labels: np.ndarray | list[int], rng: np.random.Generator, domain: str, size: int = 32
) -> np.ndarray:
    """One image per label in ``domain``: uint8 (N, size, size, 3)."""
    if domain not in DG_DOMAINS:
        raise ValueError(f"Unknown ToyShapesDG domain {domain!r}; expected one of {DG_DOMAINS}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= len(CLASSNAMES))):
        raise ValueError(f"labels must be a 1-D sequence in [0, {len(CLASSNAMES)})")
    if domain in _BORROWED:
        return render_batch(labels, rng, _BORROWED[domain], size=size).images
    n, hi = labels.shape[0], 2 * size
    mask, colour = _geometry(labels, rng, hi)
    if domain == "sketch":
        paper = rng.uniform(0.88, 1.0, (n, 1)) + rng.uniform(-0.03, 0.03, (n, 3))
        stroke = mask & ~_erode(mask, _SKETCH_STROKE)
        img = np.where(stroke[..., None], colour[:, None, None, :], paper[:, None, None, :])
    else:  # cartoon
        level = np.where(rng.random(n) < 0.5, rng.uniform(0.6, 0.9, n), rng.uniform(0.2, 0.45, n))
        flat = level[:, None] + rng.uniform(-0.15, 0.15, (n, 3))
        border = rng.uniform(0.0, 0.08, (n, 3))
        # the border lies outside the shape, so thin shapes (rings, crosses) keep their colour
        outline = _dilate(mask, _CARTOON_BORDER)
        img = np.where(outline[..., None], border[:, None, None, :], flat[:, None, None, :])
        img = np.where(mask[..., None], colour[:, None, None, :], img)
    img = img.astype(np.float32)
    img = 0.25 * (img[:, 0::2, 0::2] + img[:, 1::2, 0::2] + img[:, 0::2, 1::2] + img[:, 1::2, 1::2])
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
