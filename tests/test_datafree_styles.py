"""Style-prompt strategies and the spliced text forward (clip/text_prompts.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clip
from clip.text_prompts import encode_spliced, placeholder_positions, splice_embeddings
from datafree.config import get_datafree_cfg
from datafree.contrastive import load_or_train_styles, style_features, train_styles
from datafree.styles import MixStrategy, PromptBank, RandomStrategy, build_strategy, token_moments

CLASSES = ["red circle", "blue square", "green star"]


@pytest.fixture(scope="module")
def model():
    m, _ = clip.load("toy-teacher")
    return m.float().eval().requires_grad_(False)


def test_splice_reproduces_the_plain_forward(model):
    tokens = clip.tokenize(["a sketch style photo of a red circle.", "a photo of a ring."])
    with torch.no_grad():
        plain = model.encode_text(tokens)
        torch.testing.assert_close(encode_spliced(model, tokens), plain)
        # writing the embedding of token 2 ("sketch") over itself changes nothing ...
        pos = torch.tensor([[2], [2]])
        own = model.token_embedding(tokens)[torch.arange(2), 2].unsqueeze(1)
        torch.testing.assert_close(encode_spliced(model, tokens, own, pos), plain)
        # ... and writing another word's embedding equals tokenizing that word
        other = clip.tokenize(["a painting style photo of a red circle."])
        vec = model.token_embedding(other)[:, 2:3]
        torch.testing.assert_close(
            encode_spliced(model, tokens[:1], vec, pos[:1]), model.encode_text(other)
        )


def test_splice_and_positions_shapes():
    emb = torch.zeros(2, 5, 3)
    out = splice_embeddings(emb, torch.ones(2, 2, 3), torch.tensor([[1, 2], [3, 4]]))
    assert out[0, 1:3].eq(1).all() and out[0, [0, 3, 4]].eq(0).all() and out[1, 3:].eq(1).all()
    assert emb.eq(0).all()
    tok = torch.tensor([[1, 7, 7, 9, 0], [1, 5, 7, 7, 7]])
    assert placeholder_positions(tok, 7, 2).tolist() == [[1, 2], [2, 3]]
    with pytest.raises(ValueError, match="prompt 0 has 2 placeholder"):
        placeholder_positions(tok, 7, 3)


def test_mix_weights_on_the_simplex(model):
    words = ["photo", "sketch", "painting", "cartoon", "origami"]
    s = MixStrategy(model, CLASSES, "a {style} style photo of a {classname}.", 2, words, 3, 0.5)
    for seed in range(50):
        idx, w = s.draw(seed)
        assert idx.shape == w.shape == (2, 3)
        assert (w >= 0).all() and np.allclose(w.sum(axis=1), 1.0)
        assert all(len(set(row)) == 3 for row in idx.tolist())
    vecs, recs = s.style_vectors([3])
    idx, w = s.draw(3)
    expected = sum(w[0, i] * s.table[idx[0, i]] for i in range(3))
    torch.testing.assert_close(vecs[0, 0], expected.float(), rtol=1e-5, atol=1e-6)
    assert recs[0]["words"][0] == [words[i] for i in idx[0]]
    # small alpha: nearly pure styles (the largest weight dominates)
    sharp = MixStrategy(model, CLASSES, "a {style} photo of a {classname}.", 1, words, 3, 0.05)
    assert np.mean([sharp.draw(k)[1].max() for k in range(200)]) > 0.9


def test_random_moments_match_the_token_table(model):
    s = RandomStrategy(model, CLASSES, "a {style} style photo of a {classname}.", 1, 2.0)
    vecs, _ = s.style_vectors(list(range(4000)))
    table = model.token_embedding.weight.float()
    mu, sigma = table.mean(0), table.std(0)
    torch.testing.assert_close(token_moments(model)[0], mu)
    # mean within 5 standard errors, std within 5 %
    assert ((vecs[:, 0].mean(0) - mu).abs() < 5 * 2 * sigma / np.sqrt(4000)).all()
    ratio = vecs[:, 0].std(0) / (2 * sigma)
    assert ((ratio > 0.95) & (ratio < 1.05)).all()


def test_features_are_per_image_and_batch_independent(model):
    cfg = get_datafree_cfg()
    cfg.DATAFREE.STRATEGY = "random"
    s = build_strategy(cfg.DATAFREE, model, CLASSES)
    a, _ = s.features(torch.tensor([0, 1, 2]), [10, 11, 12])
    b, _ = s.features(torch.tensor([1]), [11])
    torch.testing.assert_close(a[1:2], b, rtol=1e-5, atol=1e-6)
    assert torch.allclose(a.norm(dim=-1), torch.ones(3))
    none = build_strategy(get_datafree_cfg().DATAFREE, model, CLASSES)
    plain = model.encode_text(clip.tokenize([f"a photo of a {c}." for c in CLASSES]))
    torch.testing.assert_close(
        none.features(torch.tensor([2]), [0])[0][0], plain[2] / plain[2].norm()
    )


def test_contrastive_loss_falls_and_styles_separate(model):
    kwargs = dict(
        num_styles=4,
        n_tokens=1,
        template="a {style} style photo of a {classname}.",
        style_template="a {style} style of a picture.",
        plain_template="a photo of a {classname}.",
        tau=0.1,
        lr=0.02,
        content_weight=1.0,
        classes_per_step=2,
        seed=0,
    )
    styles, history = train_styles(model, CLASSES, steps=15, **kwargs)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["mean_style_cos"] < history[0]["mean_style_cos"] - 0.05
    bank = PromptBank(model, kwargs["style_template"], [""], 1)
    with torch.no_grad():
        f = style_features(bank, styles)
    off = (f @ f.t())[~torch.eye(4, dtype=torch.bool)]
    assert float(off.mean()) == pytest.approx(history[-1]["mean_style_cos"], abs=0.05)
    # deterministic under the seed
    again, _ = train_styles(model, CLASSES, steps=15, **kwargs)
    torch.testing.assert_close(styles, again)


def test_contrastive_styles_saved_and_reused(model, tmp_path):
    cfg = get_datafree_cfg()
    cfg.DATAFREE.CONTRASTIVE.NUM_STYLES = 3
    cfg.DATAFREE.CONTRASTIVE.STEPS = 2
    path = str(tmp_path / "styles.safetensors")
    a = load_or_train_styles(cfg.DATAFREE, model, CLASSES, path)
    b = load_or_train_styles(cfg.DATAFREE, model, CLASSES, path)  # read back, not retrained
    torch.testing.assert_close(a, b)
    cfg.DATAFREE.CONTRASTIVE.TAU = 0.5
    with pytest.raises(ValueError, match="other settings"):
        load_or_train_styles(cfg.DATAFREE, model, CLASSES, path)


def test_unknown_strategy(model):
    cfg = get_datafree_cfg()
    cfg.DATAFREE.STRATEGY = "mixx"
    with pytest.raises(ValueError, match="mixx.*registered names"):
        build_strategy(cfg.DATAFREE, model, CLASSES)


def test_style_slot_after_class_names_of_different_lengths(model):
    names = ["red circle", "a very long purple ring"]
    bank = PromptBank(model, "a photo of a {classname} in the {style}.", names, 1)
    assert bank.positions[:, 0].tolist() == [9, 12]  # after SOT + 8 and + 11 words
    vec = model.token_embedding(clip.tokenize(["left"]))[:, 1:2].expand(2, -1, -1)
    expected = model.encode_text(clip.tokenize([f"a photo of a {c} in the left." for c in names]))
    with torch.no_grad():
        got = bank.encode(torch.tensor([0, 1]), vec)
    torch.testing.assert_close(got, expected / expected.norm(dim=-1, keepdim=True))
    with pytest.raises(ValueError, match="needs a {style} field"):
        PromptBank(model, "a photo of a {classname}.", names, 1)


def test_contrastive_class_diversity_separates_styled_class_prompts(model):
    on = "both"  # runs the style-only and the per-class terms
    kwargs = dict(
        num_styles=3,
        n_tokens=1,
        template="a {style} style photo of a {classname}.",
        style_template="a {style} style of a picture.",
        plain_template="a photo of a {classname}.",
        tau=0.1,
        lr=0.05,
        content_weight=1.0,
        classes_per_step=3,
        seed=0,
    )
    styles, history = train_styles(model, CLASSES, steps=8, diversity_on=on, **kwargs)
    start, _ = train_styles(model, CLASSES, steps=1, diversity_on=on, **kwargs)
    bank = PromptBank(model, kwargs["template"], CLASSES, 1)
    with torch.no_grad():
        f = bank.encode(torch.tensor([0, 0, 0]), styles)
        f0 = bank.encode(torch.tensor([0, 0, 0]), start)
    spread = lambda x: float((1 - (x @ x.t())[~torch.eye(3, dtype=torch.bool)]).mean())  # noqa: E731
    assert spread(f) > spread(f0) + 0.01
    with pytest.raises(ValueError, match="DIVERSITY_ON must be one of"):
        train_styles(model, CLASSES, steps=1, diversity_on="pairs", **kwargs)
