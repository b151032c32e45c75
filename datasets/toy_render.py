"""Procedural renderer of the toy world: coloured shapes on two background domains.

The toy world is the embedded default that lets the whole PromptKD pipeline (pretraining a tiny
CLIP, teacher prompt tuning, distillation, evaluation) run on a CPU in minutes without any
download. Every image shows one shape of one colour; the 36 classes are ``"<colour> <shape>"``.

Two domains share the objects but not the backgrounds, so that a CLIP pretrained on one is only
moderately good on the other (zero-shot well above chance, far from perfect):

* ``"pretrain"`` -- smooth two-tint gradients, sometimes with a mild texture (soft clouds or a
  faint lattice), mild noise. Used, with captions, to pretrain the toy CLIPs.
* ``"downstream"`` -- two-colour stripes / checkerboards / blotches, colour jitter, a global hue
  rotation, contrast and brightness shifts, stronger noise, slightly smaller objects. Used for
  the ``ToyShapes`` dataset.

Images are rendered at twice the target resolution and average-pooled 2x (cheap anti-aliasing).
Rendering is vectorised over the batch and fully determined by the ``numpy.random.Generator``
passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLOURS",
    "SHAPES",
    "CLASSNAMES",
    "DOMAINS",
    "CAPTION_TEMPLATES",
    "RenderedBatch",
    "class_parts",
    "render_batch",
    "make_captions",
    "sample_pretrain_batch",
]

# Fixed base RGB of each colour (in [0, 1]); each object jitters it per channel.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "green": (0.13, 0.68, 0.18),
    "blue": (0.12, 0.22, 0.92),
    "yellow": (0.95, 0.88, 0.12),
    "purple": (0.58, 0.18, 0.80),
    "orange": (0.98, 0.55, 0.08),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")

# Label order = sorted class names, so base (first 18) = blue/green/orange and new (last 18) =
# purple/red/yellow under the shared ceil(n/2) base/new rule.
CLASSNAMES: list[str] = sorted(f"{c} {s}" for c in COLOURS for s in SHAPES)
DOMAINS: tuple[str, ...] = ("pretrain", "downstream")

_COLOUR_NAMES = list(COLOURS)
_COLOUR_TABLE = np.array([COLOURS[c] for c in _COLOUR_NAMES], dtype=np.float32)
_LABEL_COLOUR = np.array([_COLOUR_NAMES.index(n.split(" ")[0]) for n in CLASSNAMES])
_LABEL_SHAPE = np.array([SHAPES.index(n.split(" ")[1]) for n in CLASSNAMES])


@dataclass(frozen=True)
class _DomainParams:
    """Per-domain sampling ranges (radius as a fraction of the image half-width)."""

    large: tuple[float, float]
    small: tuple[float, float]
    colour_jitter: float
    noise_sigma: float


_PARAMS = {
    "pretrain": _DomainParams(
        large=(0.44, 0.58), small=(0.28, 0.40), colour_jitter=0.08, noise_sigma=0.04
    ),
    "downstream": _DomainParams(
        large=(0.38, 0.52), small=(0.26, 0.36), colour_jitter=0.12, noise_sigma=0.07
    ),
}

# Largest extent of any shape in units of its radius (square corner at 0.82 * sqrt(2)); the
# centre is drawn so that the whole object stays inside the image.
_EXTENT = 1.16
_MAX_ROTATION = 0.4  # radians, uniform in +-


def class_parts(label: int) -> tuple[str, str]:
    """Return ``(colour, shape)`` of a class label."""
    colour, shape = CLASSNAMES[label].split(" ")
    return colour, shape


@dataclass
class RenderedBatch:
    """Images plus the latent attributes that captions talk about."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64 class labels (index into CLASSNAMES)
    large: np.ndarray  # (N,) bool: object drawn from the "large" radius range
    position: list[str]  # left / right / top / bottom / center
    bright: np.ndarray  # (N,) bool: bright (vs dark) background


# --------------------------------------------------------------------------------------------
# shapes


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit-radius shape in object coordinates (u right, v down)."""
    up = -v
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ring":
        rr = u * u + v * v
        return (rr <= 1.0) & (rr >= 0.62**2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        arm, half = 1.0, 0.34
        return ((au <= arm) & (av <= half)) | ((av <= arm) & (au <= half))
    if shape == "triangle":
        # Equilateral, pointing up, circumradius R: inside all three half-planes n.p <= R/2.
        big_r = 1.1
        inside = np.ones(u.shape, dtype=bool)
        for angle in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):
            inside &= u * np.cos(angle) + up * np.sin(angle) <= big_r / 2
        return inside
    if shape == "star":
        # Five-point star pointing up: fold the polar angle into one half-spike and test the
        # point against the edge from the outer tip to the inner vertex.
        big_r, inner = 1.1, 0.45 * 1.1
        rho = np.sqrt(u * u + up * up)
        phi = np.arctan2(u, up)  # 0 at the top
        sector = 2 * np.pi / 5
        a = np.abs(np.mod(phi + sector / 2, sector) - sector / 2)
        px, py = rho * np.cos(a), rho * np.sin(a)
        ex = inner * np.cos(sector / 2) - big_r
        ey = inner * np.sin(sector / 2)
        return ex * py - ey * (px - big_r) >= 0
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}")


# --------------------------------------------------------------------------------------------
# backgrounds


def _grey_levels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    bright = rng.random(n) < 0.5
    level = np.where(bright, rng.uniform(0.65, 0.95, n), rng.uniform(0.05, 0.35, n))
    return level.astype(np.float32), bright


def _pretrain_background(
    rng: np.random.Generator, level: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Smooth linear gradient between two tints; about a third get a mild texture on top."""
    n = level.shape[0]
    t1 = (level[:, None] + rng.uniform(-0.12, 0.12, (n, 3))).astype(np.float32)
    t2 = (level[:, None] + rng.uniform(-0.12, 0.12, (n, 3))).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, n)
    cos_t = (np.cos(theta) / (2 * np.sqrt(2))).astype(np.float32)[:, None, None]
    sin_t = (np.sin(theta) / (2 * np.sqrt(2))).astype(np.float32)[:, None, None]
    t = x[None] * cos_t + y[None] * sin_t + np.float32(0.5)
    bg = t1[:, None, None, :] + (t2 - t1)[:, None, None, :] * t[..., None]

    kind = rng.choice(3, size=n, p=[0.65, 0.2, 0.15])  # none / soft clouds / faint lattice
    coarse = rng.uniform(-1, 1, (n, 5, 5))
    amp_c = rng.uniform(0.04, 0.08, n)
    freq = rng.uniform(2.0, 4.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    ang = rng.uniform(0, np.pi / 2, n)
    amp_l = rng.uniform(0.04, 0.07, n) * np.where(rng.random(n) < 0.5, -1.0, 1.0)

    # Soft clouds: a random 5x5 grid bilinearly upsampled (separable interpolation matrices).
    sel = np.nonzero(kind == 1)[0]
    if sel.size:
        w = _bilinear_matrix(x.shape[0], 5)
        clouds = np.einsum("hi,nij,wj->nhw", w, coarse[sel] * amp_c[sel, None, None], w)
        bg[sel] += clouds.astype(np.float32)[..., None]
    # Faint lattice: thin lines of a random period and angle.
    sel = np.nonzero(kind == 2)[0]
    if sel.size:
        ca, sa = np.cos(ang[sel])[:, None, None], np.sin(ang[sel])[:, None, None]
        f, ph = np.pi * freq[sel, None, None], phi[sel, None, None]
        xr = x[None] * ca + y[None] * sa
        yr = -x[None] * sa + y[None] * ca
        line = (np.cos(f * xr + ph) > 0.85) | (np.cos(f * yr + ph) > 0.85)
        bg[sel] += (amp_l[sel, None, None] * line).astype(np.float32)[..., None]
    return bg


def _bilinear_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) weights that linearly interpolate ``cells`` knots over ``size`` pixels."""
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    frac = pos - lo
    w = np.zeros((size, cells))
    w[np.arange(size), lo] = 1 - frac
    w[np.arange(size), lo + 1] = frac
    return w


def _downstream_background(
    rng: np.random.Generator, level: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Two-colour textures: stripes, checkerboard or blotches, 2-5 cycles per half-width."""
    n = level.shape[0]
    c1 = level[:, None] + rng.uniform(-0.15, 0.15, (n, 3))
    c2 = level[:, None] + rng.uniform(-0.15, 0.15, (n, 3))
    kind = rng.integers(0, 3, n)
    freq = rng.uniform(2.0, 5.0, n)[:, None, None]
    ang = rng.uniform(0, np.pi, n)
    phases = rng.uniform(0, 2 * np.pi, (n, 3))
    xr = x[None] * np.cos(ang)[:, None, None] + y[None] * np.sin(ang)[:, None, None]
    yr = -x[None] * np.sin(ang)[:, None, None] + y[None] * np.cos(ang)[:, None, None]
    # Coordinates span [-1, 1] = two half-widths, so f cycles per half-width = pi*f per unit.
    w = np.pi * freq
    ph = [phases[:, i, None, None] for i in range(3)]
    stripes = np.sin(w * xr + ph[0]) > 0
    checker = np.sin(w * xr + ph[0]) * np.sin(w * yr + ph[1]) > 0
    blotch = (
        np.sin(0.5 * w * xr + ph[0])
        + np.sin(0.5 * w * yr + ph[1])
        + np.sin(0.5 * w * (xr + yr) / np.sqrt(2) + ph[2])
    ) > 0
    pattern = np.where(
        (kind == 0)[:, None, None], stripes, np.where((kind == 1)[:, None, None], checker, blotch)
    )
    c1, c2 = c1.astype(np.float32), c2.astype(np.float32)
    return np.where(pattern[..., None], c1[:, None, None, :], c2[:, None, None, :])


# --------------------------------------------------------------------------------------------
# colour transforms


def _hue_rotate(img: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate hue by ``angle`` radians per image in YIQ space."""
    to_yiq = np.array(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32
    )
    to_rgb = np.linalg.inv(to_yiq).astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.zeros((angle.shape[0], 3, 3), dtype=np.float32)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = to_rgb[None] @ rot @ to_yiq[None]  # (N, 3, 3) RGB -> RGB
    return np.einsum("nhwc,ndc->nhwd", img, m)


# --------------------------------------------------------------------------------------------
# public API


def render_batch(
    labels: np.ndarray | list[int], rng: np.random.Generator, domain: str, size: int = 32
) -> RenderedBatch:
    """Render one image per label in ``domain``; deterministic given the state of ``rng``."""
    if domain not in _PARAMS:
        raise ValueError(f"Unknown toy domain {domain!r}; expected one of {DOMAINS}")
    if size < 8:
        raise ValueError(f"Toy image size must be >= 8 pixels, got {size}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D sequence, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSNAMES)):
        raise ValueError(f"labels must lie in [0, {len(CLASSNAMES)}), got {labels.tolist()}")
    p = _PARAMS[domain]
    n = labels.shape[0]
    hi = 2 * size  # supersampled canvas
    coords = ((np.arange(hi) + 0.5) / hi * 2 - 1).astype(np.float32)
    y, x = np.meshgrid(coords, coords, indexing="ij")  # y grows downwards

    # Object geometry.
    large = rng.random(n) < 0.5
    radius = np.where(large, rng.uniform(*p.large, n), rng.uniform(*p.small, n))
    margin = 1.0 - _EXTENT * radius
    cx = rng.uniform(-1, 1, n) * margin
    cy = rng.uniform(-1, 1, n) * margin
    rot = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, n)
    colour = _COLOUR_TABLE[_LABEL_COLOUR[labels]] + rng.uniform(
        -p.colour_jitter, p.colour_jitter, (n, 3)
    ).astype(np.float32)
    colour = np.clip(colour, 0.0, 1.0)

    # Background.
    level, bright = _grey_levels(rng, n)
    if domain == "pretrain":
        bg = _pretrain_background(rng, level, x, y)
    else:
        bg = _downstream_background(rng, level, x, y)
    bg = np.clip(bg, 0.0, 1.0).astype(np.float32)

    # Object mask in object coordinates (rotate the offset by -rot, scale by the radius).
    f32 = np.float32
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
    img = np.where(mask[..., None], colour[:, None, None, :], bg)

    # 2x average pooling to the target size.
    img = 0.25 * (img[:, 0::2, 0::2] + img[:, 1::2, 0::2] + img[:, 0::2, 1::2] + img[:, 1::2, 1::2])

    if domain == "downstream":
        img = _hue_rotate(img, rng.uniform(-0.3, 0.3, n).astype(np.float32))
        contrast = rng.uniform(0.75, 1.1, n).astype(np.float32)[:, None, None, None]
        mean = img.mean(axis=(1, 2, 3), keepdims=True)
        shift = rng.uniform(-0.1, 0.1, n).astype(np.float32)[:, None, None, None]
        img = (img - mean) * contrast + mean + shift
    img = img + rng.normal(0.0, p.noise_sigma, img.shape).astype(np.float32)
    images = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)

    position = []
    for px, py in zip(cx, cy):
        if max(abs(px), abs(py)) < 0.25:
            position.append("center")
        elif abs(px) >= abs(py):
            position.append("left" if px < 0 else "right")
        else:
            position.append("top" if py < 0 else "bottom")
    return RenderedBatch(
        images=images, labels=labels, large=large, position=position, bright=bright
    )


# Fields: {c} colour, {s} shape, {z} small/large, {p} position, {b} dark/bright background.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {c} {s}.",
    "a {z} {c} {s} on a {b} background.",
    "the {s} is {c}.",
    "a {c} {s} in the {p}.",
    "a {c} {s}.",
    "a picture of a {z} {c} {s}.",
    "a {c} {s} on a {b} background.",
    "there is a {c} {s} in the {p} of the image.",
    "a {z} {s}, coloured {c}.",
    "an image of a {c} {s}.",
    "a {c} {s} near the {p}.",
    "a {b} picture with a {c} {s}.",
    "a rendering of a {z} {c} {s}.",
    "one {c} {s} on a {b} background.",
    "a {c} coloured {s} in the {p}.",
)


# Caption vocabularies: the words a pretraining corpus uses for the shapes. "classnames" names
# shapes as the ToyShapes class names do; "synonyms" is another corpus that describes the same
# shapes with other words, so a CLIP pretrained on it has image features that separate the shapes
# but a text tower that has never seen the class names' shape words.
SHAPE_VOCABULARIES: dict[str, dict[str, str]] = {
    "classnames": {s: s for s in SHAPES},
    "synonyms": {
        "circle": "disc",
        "square": "box",
        "triangle": "wedge",
        "star": "sparkle",
        "cross": "plus",
        "ring": "donut",
    },
}


def make_captions(
    batch: RenderedBatch, rng: np.random.Generator, vocabulary: str = "classnames"
) -> list[str]:
    """One caption per image, each from a uniformly drawn template."""
    if vocabulary not in SHAPE_VOCABULARIES:
        raise ValueError(
            f"Unknown caption vocabulary {vocabulary!r}; expected one of {sorted(SHAPE_VOCABULARIES)}"
        )
    words = SHAPE_VOCABULARIES[vocabulary]
    which = rng.integers(0, len(CAPTION_TEMPLATES), batch.labels.shape[0])
    captions = []
    for i, t in enumerate(which):
        colour, shape = class_parts(int(batch.labels[i]))
        captions.append(
            CAPTION_TEMPLATES[t].format(
                c=colour,
                s=words[shape],
                z="large" if batch.large[i] else "small",
                p=batch.position[i],
                b="bright" if batch.bright[i] else "dark",
            )
        )
    return captions


def sample_pretrain_batch(
    rng: np.random.Generator, batch_size: int, size: int = 32, vocabulary: str = "classnames"
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Fresh pretraining data: uniformly drawn classes, images and captions."""
    labels = rng.integers(0, len(CLASSNAMES), batch_size)
    batch = render_batch(labels, rng, "pretrain", size=size)
    return batch.images, make_captions(batch, rng, vocabulary), labels
