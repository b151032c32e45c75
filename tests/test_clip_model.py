"""clip.model: numerics against an independent re-computation, architecture inference, prompts."""

import math

import pytest
import torch

from clip.model import (
    CLIP,
    StateDictError,
    build_model,
    build_visual,
    convert_weights,
    infer_architecture,
)
from clip.testing import tiny_resnet_state_dict, tiny_vit_state_dict

N_CTX = 3


@pytest.fixture(scope="module")
def vit_sd():
    # width 128 -> 2 heads, so the head split is exercised; 3 layers for depth tests.
    return tiny_vit_state_dict(width=128, layers=3, text_width=128, text_layers=3, vocab_size=600)


@pytest.fixture(scope="module")
def rn_sd():
    return tiny_resnet_state_dict(vocab_size=600)


def _tokens(batch=2, length=77):
    text = torch.zeros(batch, length, dtype=torch.long)
    text[:, 0] = 598
    text[0, 1:6] = torch.tensor([5, 17, 300, 42, 599])  # EOT (largest id) at position 5
    text[1, 1:4] = torch.tensor([9, 8, 599])
    return text


# ----------------------------------------------------------------- independent reference
def _ln(x, sd, prefix):
    x = x.float()
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * sd[prefix + ".weight"].float() + sd[
        prefix + ".bias"
    ].float()


def _block(x, sd, p, causal):
    """One pre-LN block on [N, L, D] with explicit softmax(QK^T/sqrt(d) + mask) V."""
    n, length, d = x.shape
    heads = d // 64
    h = _ln(x, sd, p + "ln_1")
    qkv = h @ sd[p + "attn.in_proj_weight"].float().t() + sd[p + "attn.in_proj_bias"].float()
    q, k, v = qkv.split(d, dim=-1)

    def split(t):
        return t.reshape(n, length, heads, d // heads).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
    if causal:
        scores = scores + torch.full((length, length), float("-inf")).triu(1)
    att = torch.softmax(scores, dim=-1) @ split(v)
    att = att.transpose(1, 2).reshape(n, length, d)
    x = x + att @ sd[p + "attn.out_proj.weight"].float().t() + sd[p + "attn.out_proj.bias"].float()
    h = _ln(x, sd, p + "ln_2")
    h = h @ sd[p + "mlp.c_fc.weight"].float().t() + sd[p + "mlp.c_fc.bias"].float()
    h = h * torch.sigmoid(1.702 * h)
    return x + h @ sd[p + "mlp.c_proj.weight"].float().t() + sd[p + "mlp.c_proj.bias"].float()


def ref_encode_image(sd, image, vpt=None, shallow=None):
    """ViT image features; ``vpt`` appended after the patches, ``shallow[i]`` replaces them at i."""
    w = sd["visual.conv1.weight"].float()
    patch = w.shape[-1]
    x = torch.nn.functional.conv2d(image, w, stride=patch)
    x = x.flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].float().expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + sd["visual.positional_embedding"].float()
    if vpt is not None:
        x = torch.cat([x, vpt.float().expand(x.shape[0], -1, -1)], 1)
    x = _ln(x, sd, "visual.ln_pre")
    layers = len([k for k in sd if k.startswith("visual.") and k.endswith("attn.in_proj_weight")])
    for i in range(layers):
        if shallow and i in shallow:
            n = shallow[i].shape[0]
            x = torch.cat([x[:, :-n], shallow[i].float().expand(x.shape[0], -1, -1)], 1)
        x = _block(x, sd, f"visual.transformer.resblocks.{i}.", causal=False)
    return _ln(x[:, 0], sd, "visual.ln_post") @ sd["visual.proj"].float()


def ref_encode_text(sd, text, shallow=None):
    x = sd["token_embedding.weight"].float()[text] + sd["positional_embedding"].float()
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        if shallow and i in shallow:
            n = shallow[i].shape[0]
            ctx = shallow[i].float().expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], ctx, x[:, 1 + n :]], 1)
        x = _block(x, sd, f"transformer.resblocks.{i}.", causal=True)
    x = _ln(x, sd, "ln_final")
    return x[torch.arange(x.shape[0]), text.argmax(-1)] @ sd["text_projection"].float()


# ----------------------------------------------------------------- plain model
def test_encoders_match_independent_computation(vit_sd):
    model = build_model(vit_sd).float()
    torch.manual_seed(1)
    image = torch.randn(2, 3, 16, 16)
    text = _tokens()
    with torch.no_grad():
        img = model.encode_image(image)
        txt = model.encode_text(text)
        logits_img, logits_txt = model(image, text)
    torch.testing.assert_close(img, ref_encode_image(vit_sd, image), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(txt, ref_encode_text(vit_sd, text), atol=2e-5, rtol=1e-4)
    i = img / img.norm(dim=-1, keepdim=True)
    t = txt / txt.norm(dim=-1, keepdim=True)
    scale = vit_sd["logit_scale"].float().exp()
    torch.testing.assert_close(logits_img, scale * i @ t.t())
    torch.testing.assert_close(logits_txt, logits_img.t())


def test_eot_pooling_ignores_tokens_after_eot(vit_sd):
    model = build_model(vit_sd).float()
    text = _tokens()
    changed = text.clone()
    changed[0, 10] = 77  # after EOT: invisible through the causal mask
    with torch.no_grad():
        assert torch.equal(model.encode_text(text), model.encode_text(changed))
        changed[0, 2] = 78  # before EOT: visible
        assert not torch.allclose(model.encode_text(text), model.encode_text(changed))


def test_encode_text_embeddings_equals_encode_text(vit_sd):
    model = build_model(vit_sd).float()
    text = _tokens()
    with torch.no_grad():
        emb = model.token_embedding(text).type(model.dtype)
        assert torch.equal(model.encode_text_embeddings(emb, text), model.encode_text(text))


def test_layernorm_fp16_is_computed_in_fp32():
    from clip.model import LayerNorm

    ln = LayerNorm(64)
    torch.nn.init.normal_(ln.weight)
    x = (torch.randn(4, 64) * 300 + 1000).half()
    out = ln(x)
    assert out.dtype == torch.float16
    ref = torch.nn.functional.layer_norm(x.float(), (64,), ln.weight, ln.bias).half()
    assert torch.equal(out, ref)


def test_convert_weights_dtypes(vit_sd):
    model = build_model(vit_sd, {"trainer": "IVLP", "vision_depth": 2, "vision_ctx": 2})
    half = [
        "visual.conv1.weight",
        "visual.proj",
        "text_projection",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.attn.in_proj_bias",
        "transformer.resblocks.0.attn.out_proj.weight",
        "transformer.resblocks.0.mlp.c_fc.bias",
    ]
    full = ["ln_final.weight", "token_embedding.weight", "positional_embedding", "logit_scale"]
    full += ["visual.VPT", "visual.transformer.resblocks.1.VPT_shallow", "visual.class_embedding"]
    params = dict(model.named_parameters())
    assert all(params[k].dtype == torch.float16 for k in half)
    assert all(params[k].dtype == torch.float32 for k in full)
    assert model.dtype == torch.float16
    fresh = CLIP(32, 16, 1, 64, 4, 77, 100, 64, 1, 1)
    convert_weights(fresh)
    assert fresh.visual.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16


@pytest.mark.parametrize(
    "args",
    [
        # embed, res, vision_layers, vision_width, patch, ctx, vocab, width, heads, layers
        (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),  # RN50
        (640, 288, (4, 6, 10, 6), 80, None, 77, 49408, 640, 10, 12),  # RN50x4
        (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),  # ViT-B/32
        (768, 336, 24, 1024, 14, 77, 49408, 768, 12, 12),  # ViT-L/14@336px
    ],
)
def test_official_architectures_roundtrip_through_shapes(args):
    keys = [
        "embed_dim",
        "image_resolution",
        "vision_layers",
        "vision_width",
        "vision_patch_size",
        "context_length",
        "vocab_size",
        "transformer_width",
        "transformer_heads",
        "transformer_layers",
    ]
    with torch.device("meta"):
        model = CLIP(*args)
    inferred = infer_architecture(model.state_dict())
    assert inferred == dict(zip(keys, args))
    if isinstance(args[2], tuple):
        assert model.visual.attnpool.num_heads == args[3] * 32 // 64
    else:
        assert model.visual.transformer.resblocks[0].attn.num_heads == args[3] // 64


def test_build_model_drops_metadata_and_keeps_input(vit_sd):
    sd = dict(vit_sd)
    model = build_model(sd)
    assert set(sd) == set(vit_sd)  # caller's dict untouched
    assert model.visual.input_resolution == 16 and model.context_length == 77
    assert not model.training


def test_build_model_rejects_incomplete_or_foreign_state_dicts(vit_sd):
    sd = dict(vit_sd)
    del sd["visual.ln_post.bias"]
    with pytest.raises(StateDictError, match="visual.ln_post.bias"):
        build_model(sd)
    sd = dict(vit_sd)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(StateDictError, match="extra.weight"):
        build_model(sd)
    with pytest.raises(StateDictError, match="visual.proj"):
        build_model({"state_dict": torch.zeros(1), "epoch": torch.tensor(1)})
    # prompt keys without matching design_details are unexpected
    prompted = build_model(vit_sd, {"trainer": "IVLP", "vision_depth": 2, "vision_ctx": 2})
    with pytest.raises(StateDictError, match="VPT"):
        build_model({**vit_sd, **prompted.state_dict()})


def test_resnet_model_and_build_visual(rn_sd):
    model = build_model(rn_sd).float()
    assert model.visual.input_resolution == 64 and model.visual.output_dim == 32
    visual = build_visual(rn_sd).float()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(visual(image), model.encode_image(image))
    assert not any(k.startswith("transformer") for k in visual.state_dict())
    with pytest.raises(ValueError, match="ViT"):
        build_model(rn_sd, {"trainer": "IVLP", "vision_depth": 2, "vision_ctx": 2})


def test_attention_pool_matches_explicit_softmax(rn_sd):
    visual = build_visual(rn_sd).float()
    pool = visual.attnpool
    feats = torch.randn(2, pool.k_proj.in_features, 2, 2)
    x = feats.flatten(2).permute(0, 2, 1)  # N, HW, C
    x = torch.cat([x.mean(1, keepdim=True), x], 1) + pool.positional_embedding
    heads, c = pool.num_heads, x.shape[-1]
    q = pool.q_proj(x[:, :1]).reshape(2, 1, heads, c // heads).transpose(1, 2)
    k = pool.k_proj(x).reshape(2, -1, heads, c // heads).transpose(1, 2)
    v = pool.v_proj(x).reshape(2, -1, heads, c // heads).transpose(1, 2)
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), -1) @ v
    expected = pool.c_proj(att.transpose(1, 2).reshape(2, c))
    with torch.no_grad():
        torch.testing.assert_close(pool(feats), expected, atol=1e-5, rtol=1e-4)


def test_build_visual_vit_equals_full_model(vit_sd):
    model = build_model(vit_sd).float()
    visual = build_visual(vit_sd).float()
    image = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(visual(image), model.encode_image(image))
    only_visual = {k: v for k, v in vit_sd.items() if k.startswith("visual.")}
    assert set(build_visual(only_visual).state_dict()) == {k[7:] for k in only_visual}


# ----------------------------------------------------------------- deep prompts
def _ivlp(vd, ld, n=N_CTX, trainer="IVLP"):
    return {
        "trainer": trainer,
        "vision_depth": vd,
        "language_depth": ld,
        "vision_ctx": n,
        "language_ctx": n,
        "maple_length": n,
    }


@pytest.mark.parametrize(
    "details",
    [
        None,
        {"trainer": "CoOp"},
        {"trainer": "CoCoOp"},
        _ivlp(0, 0, 0),
        _ivlp(0, 0, 0, "VPT"),
        _ivlp(0, 0),
        _ivlp(0, 0, 0, "MaPLe"),
    ],
)
def test_depth_zero_reproduces_plain_model_exactly(vit_sd, details):
    plain = build_model(vit_sd).float()
    prompted = build_model(vit_sd, details).float()
    assert set(prompted.state_dict()) == set(plain.state_dict())
    image, text = torch.randn(2, 3, 16, 16), _tokens()
    with torch.no_grad():
        assert torch.equal(prompted.encode_image(image), plain.encode_image(image))
        assert torch.equal(prompted.encode_text(text), plain.encode_text(text))


def test_ivlp_parameter_names(vit_sd):
    model = build_model(vit_sd, _ivlp(3, 2))
    names = {k for k, _ in model.named_parameters() if "VPT" in k}
    assert names == {
        "visual.VPT",
        "visual.transformer.resblocks.1.VPT_shallow",
        "visual.transformer.resblocks.2.VPT_shallow",
        "transformer.resblocks.1.VPT_shallow",
    }
    assert model.visual.VPT.shape == (N_CTX, 128)
    assert model.transformer.resblocks[1].VPT_shallow.shape == (N_CTX, 128)
    # VPT: the same vision prompts, no text prompts whatever language_depth says
    vpt = build_model(vit_sd, _ivlp(3, 2, trainer="VPT"))
    assert {k for k, _ in vpt.named_parameters() if "VPT" in k} == {
        n for n in names if n.startswith("visual.")
    }
    # vision_depth=1: first-layer prompts only
    one = build_model(vit_sd, _ivlp(1, 1))
    assert {k for k, _ in one.named_parameters() if "VPT" in k} == {"visual.VPT"}
    # std 0.02 init (loose bound on 3x128 samples)
    assert 0.01 < model.visual.VPT.float().std().item() < 0.03


def test_ivlp_prompts_match_independent_computation(vit_sd):
    model = build_model(vit_sd, _ivlp(2, 3)).float()
    image, text = torch.randn(2, 3, 16, 16), _tokens()
    v_shallow = {1: model.visual.transformer.resblocks[1].VPT_shallow.detach()}
    t_shallow = {i: model.transformer.resblocks[i].VPT_shallow.detach() for i in (1, 2)}
    with torch.no_grad():
        got_img = model.encode_image(image)
        got_txt = model.encode_text(text)
    ref_img = ref_encode_image(vit_sd, image, vpt=model.visual.VPT.detach(), shallow=v_shallow)
    torch.testing.assert_close(got_img, ref_img, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(
        got_txt, ref_encode_text(vit_sd, text, t_shallow), atol=2e-5, rtol=1e-4
    )


@pytest.mark.parametrize("depth", [2, 3])
def test_prompt_at_depth_changes_only_layers_below_depth(vit_sd, depth):
    model = build_model(vit_sd, _ivlp(depth, depth)).float()
    image, text = torch.randn(2, 3, 16, 16), _tokens()
    vis = model.visual.transformer.resblocks
    txt = model.transformer.resblocks
    assert all(vis[i].VPT_shallow is None for i in range(depth, len(vis)))
    assert all(txt[i].VPT_shallow is None for i in range(depth, len(txt)))
    assert vis[0].VPT_shallow is None and txt[0].VPT_shallow is None
    with torch.no_grad():
        before = model.encode_image(image), model.encode_text(text)
        # random, not constant: a constant shift per token is removed by ln_1
        vis[depth - 1].VPT_shallow.add_(torch.randn_like(vis[depth - 1].VPT_shallow))
        txt[depth - 1].VPT_shallow.add_(torch.randn_like(txt[depth - 1].VPT_shallow))
        after = model.encode_image(image), model.encode_text(text)
    assert not torch.allclose(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_maple_outside_prompts_equal_ivlp_owned_prompts(vit_sd):
    ivlp = build_model(vit_sd, _ivlp(3, 3)).float()
    maple = build_model(vit_sd, _ivlp(0, 0, trainer="MaPLe")).float()
    image, text = torch.randn(2, 3, 16, 16), _tokens()
    v_deep = [ivlp.visual.transformer.resblocks[i].VPT_shallow for i in (1, 2)]
    t_deep = [ivlp.transformer.resblocks[i].VPT_shallow for i in (1, 2)]
    with torch.no_grad():
        got = maple.encode_image(image, shared_ctx=ivlp.visual.VPT, deep_prompts=v_deep)
        assert torch.equal(got, ivlp.encode_image(image))
        # upstream TextEncoder style: the transformer takes [x, prompts, counter]
        emb = maple.token_embedding(text)
        assert torch.equal(
            maple.encode_text_embeddings(emb, text, deep_prompts=t_deep), ivlp.encode_text(text)
        )
        out = maple.transformer([emb.permute(1, 0, 2), t_deep, 0])
        assert isinstance(out, list) and out[2] == 2
        # fewer deep prompts than layers: later layers are left untouched
        short = maple.encode_image(image, shared_ctx=ivlp.visual.VPT, deep_prompts=v_deep[:1])
        ivlp.visual.transformer.resblocks[2].VPT_shallow = None
        assert torch.equal(short, ivlp.encode_image(image))


def test_prompts_follow_activation_dtype(vit_sd):
    image, text = torch.randn(2, 3, 16, 16), _tokens()
    ref = build_model(vit_sd, _ivlp(2, 2)).float()
    with torch.no_grad():
        expected = ref.encode_image(image), ref.encode_text(text)
    for dtype in (torch.float16, torch.bfloat16):
        model = build_model(vit_sd, _ivlp(2, 2)).float()
        model.load_state_dict(ref.state_dict())
        for name, param in model.named_parameters():
            if "VPT" not in name:  # prompts stay fp32, as a trainer keeps them
                param.data = param.data.to(dtype)
        assert model.visual.VPT.dtype == torch.float32
        with torch.no_grad():
            img, txt = model.encode_image(image), model.encode_text(text)
        assert img.dtype == dtype and txt.dtype == dtype
        tol = 0.05 if dtype == torch.bfloat16 else 0.01
        torch.testing.assert_close(img.float(), expected[0], atol=tol, rtol=tol)
        torch.testing.assert_close(txt.float(), expected[1], atol=tol, rtol=tol)


def test_prompt_gradients_reach_prompts_only_when_frozen(vit_sd):
    model = build_model(vit_sd, _ivlp(2, 2)).float()
    for name, param in model.named_parameters():
        param.requires_grad_("VPT" in name)
    loss = model.encode_image(torch.randn(1, 3, 16, 16)).sum() + model.encode_text(_tokens()).sum()
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {
        "visual.VPT",
        "visual.transformer.resblocks.1.VPT_shallow",
        "transformer.resblocks.1.VPT_shallow",
    }


def test_invalid_design_details():
    sd = tiny_vit_state_dict(layers=1, text_layers=1, vocab_size=100)
    with pytest.raises(ValueError, match="IVLP"):
        build_model(sd, {"trainer": "Nope"})
    with pytest.raises(ValueError, match="vision_depth"):
        build_model(sd, {"trainer": "IVLP", "vision_depth": -1})
