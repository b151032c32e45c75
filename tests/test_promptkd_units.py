"""Unit checks of PromptKD pieces against hand-computed values (tiny tensors, CPU)."""

import math

import pytest
import torch
from torch import nn

from trainers.class_vectors import ClassVectorMismatch, load_class_vectors, save_class_vectors
from trainers.distillation import Distiller, KDLoss
from trainers.projector import ConvBNProjector, MLPProjector, build_projector
from trainers.promptsrc_losses import (
    GaussianPromptAggregator,
    PromptSRCLoss,
    gpa_weights,
    scl_image_loss,
    scl_logits_loss,
    scl_text_loss,
)


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def _kl(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))


S = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
T = [[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]]


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_kd_loss_both_normalisations_match_hand_values(temp):
    total = (
        sum(
            _kl(_softmax([v / temp for v in t]), _softmax([v / temp for v in s]))
            for s, t in zip(S, T)
        )
        * temp**2
    )
    s, t = torch.tensor(S), torch.tensor(T)
    official = KDLoss(temp, "official")(s, t).item()
    batchmean = KDLoss(temp, "batchmean")(s, t).item()
    assert official == pytest.approx(total / 6, rel=1e-6)  # sum / (B * C)
    assert batchmean == pytest.approx(total / 2, rel=1e-6)  # sum / B
    assert batchmean == pytest.approx(official * 3, rel=1e-6)  # official = batchmean / C


def test_kd_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="KD_NORM"):
        KDLoss(1.0, "mean")
    with pytest.raises(ValueError, match="TEMPERATURE"):
        KDLoss(0.0)


def test_promptsrc_losses_hand_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 0.5]])
    assert scl_text_loss(a, b).item() == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert scl_image_loss(b, a).item() == pytest.approx(0.625)
    s, t = torch.tensor(S), torch.tensor(T)
    # KL(zero-shot || prompted), summed over batch and classes, divided by numel
    want = sum(_kl(_softmax(z), _softmax(p)) for p, z in zip(S, T)) / 6
    assert scl_logits_loss(s, t).item() == pytest.approx(want, rel=1e-6)

    labels = torch.tensor([0, 1])
    out = PromptSRCLoss(25, 10)(s, labels, a, b, b, a, t)
    ce = (-math.log(_softmax(S[0])[0]) - math.log(_softmax(S[1])[1])) / 2
    assert out["loss_ce"].item() == pytest.approx(ce, rel=1e-6)
    assert out["loss_scl_text"].item() == pytest.approx(25 * 0.625)
    assert out["loss_scl_image"].item() == pytest.approx(10 * 0.625)
    assert out["loss"].item() == pytest.approx(ce + 25 * 0.625 + 10 * 0.625 + want, rel=1e-6)


def test_gpa_weights_and_aggregation():
    w = gpa_weights(3, 2, 1)
    g = [math.exp(-0.5), 1.0, math.exp(-0.5)]
    assert w == pytest.approx([v / sum(g) for v in g])
    assert gpa_weights(20, 15, 1)[14] == max(gpa_weights(20, 15, 1))
    with pytest.raises(ValueError, match="GPA_STD"):
        gpa_weights(3, 2, 0)

    m = nn.Linear(2, 1)
    m.bias.requires_grad_(False)
    agg = GaussianPromptAggregator(w)
    frozen_bias = m.bias.detach().clone()
    values = [1.0, 2.0, 4.0]
    for epoch, v in enumerate(values):
        with torch.no_grad():
            m.weight.fill_(v)
        agg.update(m, epoch)
    agg.apply(m)
    want = sum(wi * vi for wi, vi in zip(w, values))
    assert torch.allclose(m.weight, torch.full((1, 2), want))
    assert torch.equal(m.bias, frozen_bias)  # frozen weights untouched
    state = agg.state_dict()
    agg2 = GaussianPromptAggregator(w)
    agg2.load_state_dict(state)
    assert agg2.epochs_seen == [0, 1, 2] and torch.equal(agg2.sum["weight"], agg.sum["weight"])


def test_class_vectors_roundtrip_and_mismatch_errors(tmp_path):
    names = ["red circle", "blue_square", "green star"]
    v = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    path = str(tmp_path / "cv.safetensors")
    save_class_vectors(
        path,
        v,
        names,
        base_classes=range(0, 2),
        new_classes=range(2, 3),
        dataset="Toy",
        teacher_backbone="toy-teacher",
        teacher_checkpoint_sha256="ab" * 32,
        prompt={"n_ctx_text": 4},
        logit_scale=50.0,
    )
    cv = load_class_vectors(path, classnames=names, dim=2)
    assert torch.allclose(cv.vectors[0], torch.tensor([0.6, 0.8]))
    assert torch.allclose(cv.vectors.norm(dim=1), torch.ones(3))
    assert (
        cv.classnames == names and cv.base_classes == range(0, 2) and cv.new_classes == range(2, 3)
    )
    assert (cv.dataset, cv.teacher_backbone, cv.logit_scale) == ("Toy", "toy-teacher", 50.0)
    assert cv.prompt == {"n_ctx_text": 4} and cv.teacher_checkpoint_sha256 == "ab" * 32
    assert torch.equal(cv.subset(cv.new_classes), cv.vectors[2:])
    assert not list(tmp_path.glob(".class_vectors-*"))  # atomic write leaves no temp file

    with pytest.raises(ClassVectorMismatch) as e:
        load_class_vectors(path, classnames=["red circle", "blue square", "green star"])
    msg = str(e.value)
    assert "index 1" in msg and "'blue square'" in msg and "'blue_square'" in msg and path in msg
    with pytest.raises(ClassVectorMismatch, match="index 3"):
        load_class_vectors(path, classnames=names + ["extra"])
    with pytest.raises(ClassVectorMismatch, match="dimension 2 but the model expects 5"):
        load_class_vectors(path, dim=5)
    with pytest.raises(FileNotFoundError, match="export_class_vectors"):
        load_class_vectors(str(tmp_path / "missing.safetensors"))


def test_projectors_take_dims_from_arguments():
    x = torch.randn(4, 32)
    mlp = build_projector("mlp", 32, 48, 2)
    assert isinstance(mlp, MLPProjector) and mlp(x).shape == (4, 48)
    assert [m.in_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [32, 48]
    assert (
        len([m for m in build_projector("mlp", 32, 48, 3).modules() if isinstance(m, nn.Linear)])
        == 3
    )
    conv = build_projector("conv_bn", 32, 48).eval()
    assert isinstance(conv, ConvBNProjector) and conv(x).shape == (4, 48)
    assert {"conv1.0.weight", "conv1.1.running_mean", "conv1.3.weight"} <= set(conv.state_dict())
    with pytest.raises(ValueError, match="PROJECTOR"):
        build_projector("linear", 32, 48)


def test_distiller_is_frozen_and_stays_in_eval():
    teacher = nn.Sequential(nn.Linear(8, 4), nn.Dropout(0.5))
    vectors = nn.functional.normalize(torch.randn(3, 4), dim=1)
    d = Distiller(teacher, vectors, 10.0, KDLoss())
    assert all(not p.requires_grad for p in d.parameters())
    d.train()
    assert not d.training and not teacher.training
    x = torch.randn(5, 8)
    logits = d.teacher_logits(x)
    feats = nn.functional.normalize(teacher(x), dim=1)
    assert torch.allclose(logits, 10.0 * feats @ vectors.t(), atol=1e-6)
    assert not logits.requires_grad
    assert d.teacher_logits(x, range(1, 3)).shape == (5, 2)
