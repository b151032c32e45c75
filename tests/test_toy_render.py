"""The toy-world renderer: determinism, class set, shape geometry, captions, domains."""

import math
import re
from collections import Counter

import numpy as np
import pytest

from datasets.base_new import base_new_ranges
from datasets.toy_render import (
    CAPTION_TEMPLATES,
    CLASSNAMES,
    COLOURS,
    SHAPE_VOCABULARIES,
    SHAPES,
    _hue_rotate,
    _shape_mask,
    class_parts,
    make_captions,
    render_batch,
    sample_pretrain_batch,
)


def test_classnames_sorted_and_base_new_colours():
    assert len(CLASSNAMES) == 36 == len(COLOURS) * len(SHAPES)
    assert CLASSNAMES == sorted(CLASSNAMES)
    base, new = base_new_ranges(len(CLASSNAMES))
    assert {class_parts(i)[0] for i in base} == {"blue", "green", "orange"}
    assert {class_parts(i)[0] for i in new} == {"purple", "red", "yellow"}
    assert CLASSNAMES[0] == "blue circle" and CLASSNAMES[-1] == "yellow triangle"


@pytest.mark.parametrize("domain", ["pretrain", "downstream"])
def test_render_is_deterministic_and_well_formed(domain):
    labels = np.arange(36)
    a = render_batch(labels, np.random.default_rng(7), domain)
    b = render_batch(labels, np.random.default_rng(7), domain)
    c = render_batch(labels, np.random.default_rng(8), domain)
    assert a.images.shape == (36, 32, 32, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    assert a.position == b.position
    assert not np.array_equal(a.images, c.images)
    assert render_batch(labels[:4], np.random.default_rng(0), domain, size=16).images.shape == (
        4,
        16,
        16,
        3,
    )


def test_pretrain_batches_are_class_balanced_and_reproducible():
    imgs1, caps1, labels1 = sample_pretrain_batch(np.random.default_rng(3), 720)
    imgs2, caps2, labels2 = sample_pretrain_batch(np.random.default_rng(3), 720)
    np.testing.assert_array_equal(imgs1, imgs2)
    assert caps1 == caps2
    counts = Counter(labels1.tolist())
    assert set(counts) == set(range(36))
    assert min(counts.values()) >= 7 and max(counts.values()) <= 36  # expected 20 each


def test_captions_name_the_object():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(36), 5)
    batch = render_batch(labels, rng, "pretrain")
    caps = make_captions(batch, rng)
    assert len({c for c in caps}) > 50
    for label, cap in zip(labels, caps):
        colour, shape = class_parts(int(label))
        assert colour in cap and shape in cap, cap
    assert len(CAPTION_TEMPLATES) == 15
    # every template mentions colour and shape; the others fields are really used
    assert all("{c}" in t and "{s}" in t for t in CAPTION_TEMPLATES)
    for field in ("{z}", "{p}", "{b}"):
        assert any(field in t for t in CAPTION_TEMPLATES)


def test_synonym_vocabulary_never_uses_the_class_names_shape_words():
    """The student's caption corpus describes the same shapes with other words."""
    from clip import tokenize

    labels = np.repeat(np.arange(36), 5)
    batch = render_batch(labels, np.random.default_rng(0), "pretrain")
    plain = make_captions(batch, np.random.default_rng(1))
    syn = make_captions(batch, np.random.default_rng(1), vocabulary="synonyms")
    words = SHAPE_VOCABULARIES["synonyms"]
    assert set(words) == set(SHAPES) and len(set(words.values())) == len(SHAPES)
    shape_tokens = {int(t) for s in SHAPES for t in tokenize(s)[0] if 0 < t < 49406}
    for label, a, b in zip(labels, plain, syn):
        colour, shape = class_parts(int(label))
        # same template draws, other shape word ("rendering" must keep its "ring")
        assert b == re.sub(rf"\b{shape}\b", words[shape], a)
        assert colour in b and not any(s in b.split() or f"{s}." in b for s in SHAPES), b
        assert not shape_tokens & {int(t) for t in tokenize(b)[0]}
    with pytest.raises(ValueError, match="caption vocabulary"):
        make_captions(batch, np.random.default_rng(1), vocabulary="nope")


def _area(shape: str, n: int = 801) -> float:
    coords = np.linspace(-1.3, 1.3, n)
    v, u = np.meshgrid(coords, coords, indexing="ij")
    cell = (coords[1] - coords[0]) ** 2
    return float(_shape_mask(shape, u[None], v[None]).sum() * cell)


def test_shape_masks_match_analytic_areas():
    r_tri = 1.1
    r_star, r_in = 1.1, 0.45 * 1.1
    expected = {
        "circle": math.pi,
        "ring": math.pi * (1 - 0.62**2),
        "square": 1.64**2,
        "cross": 2 * (2.0 * 0.68) - 0.68**2,
        "triangle": 3 * math.sqrt(3) / 4 * r_tri**2,
        # ten triangles (centre, outer tip, inner vertex)
        "star": 10 * 0.5 * r_star * r_in * math.sin(math.pi / 5),
    }
    for shape, area in expected.items():
        assert _area(shape) == pytest.approx(area, rel=0.01), shape


def test_triangle_and_star_point_up():
    # v grows downwards: the top tip (v = -1.05) is inside, the bottom point (v = +1.05) is not
    for shape in ("triangle", "star"):
        top = _shape_mask(shape, np.array([0.0]), np.array([-1.05]))
        bottom = _shape_mask(shape, np.array([0.0]), np.array([1.05]))
        assert top.item() and not bottom.item(), shape


def test_hue_rotation_keeps_greys_and_is_identity_at_zero():
    rng = np.random.default_rng(0)
    img = rng.random((2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(_hue_rotate(img, np.zeros(2, np.float32)), img, atol=1e-5)
    grey = np.repeat(rng.random((2, 4, 4, 1)).astype(np.float32), 3, axis=-1)
    np.testing.assert_allclose(
        _hue_rotate(grey, np.array([0.3, -0.3], np.float32)), grey, atol=1e-5
    )


def test_domains_differ_in_background_texture():
    # Downstream backgrounds are two-colour textures: many more strong pixel-to-pixel edges.
    labels = np.arange(36).repeat(4)
    edges = {}
    for domain in ("pretrain", "downstream"):
        imgs = render_batch(labels, np.random.default_rng(1), domain).images.astype(np.float32)
        edges[domain] = np.abs(np.diff(imgs, axis=2)).mean()
    assert edges["downstream"] > 1.3 * edges["pretrain"]


def test_bad_arguments_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="domain"):
        render_batch([0], rng, "sketch")
    with pytest.raises(ValueError, match="labels"):
        render_batch([36], rng, "pretrain")
