"""The shipped toy CLIPs: produced by tools/pretrain_toy_clip.py, loadable, documented, honest."""

import json
import os

import pytest
import torch

import clip
from tools.pretrain_toy_clip import (
    ARCHITECTURES,
    SIDECAR,
    export_state_dict,
    lr_at,
    main,
    pretrain,
    sha256_of,
    zero_shot_base_new,
)

WEIGHTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clip", "weights"
)
NAMES = ("teacher", "student")


def _shipped(name):
    return torch.load(
        os.path.join(WEIGHTS, f"toy-{name}.pt"), map_location="cpu", weights_only=True
    )


@pytest.fixture(scope="module")
def sidecar():
    with open(os.path.join(WEIGHTS, SIDECAR)) as f:
        return json.load(f)


@pytest.mark.parametrize("name", NAMES)
def test_script_output_has_the_shipped_format(name):
    sd = export_state_dict(pretrain(name, steps=2, batch_size=4, lr=1e-3, seed=0, log_every=0))
    shipped = _shipped(name)
    assert set(sd) == set(shipped)
    for k, v in shipped.items():
        assert v.shape == sd[k].shape and v.dtype == sd[k].dtype, k
    assert all(v.dtype == torch.float16 for v in shipped.values() if v.is_floating_point())
    assert not any(k.endswith(("VPT", "VPT_shallow")) for k in shipped)  # no prompts baked in


@pytest.mark.parametrize("name", NAMES)
def test_sidecar_describes_the_shipped_files(sidecar, name):
    entry = sidecar["models"][f"toy-{name}"]
    path = os.path.join(WEIGHTS, entry["file"])
    assert entry["sha256"] == sha256_of(path)
    assert entry["bytes"] == os.path.getsize(path)
    assert entry["architecture"] == ARCHITECTURES[name]
    assert entry["command"].startswith("python tools/pretrain_toy_clip.py --model " + name)
    assert entry["versions"]["torch"] and entry["recipe"]["steps"] >= 1
    zs = entry["zero_shot"]
    assert zs["hm"] == pytest.approx(
        2 * zs["base"] * zs["new"] / (zs["base"] + zs["new"]), abs=0.02
    )


def test_teacher_is_clearly_stronger_zero_shot(sidecar):
    teacher = sidecar["models"]["toy-teacher"]["zero_shot"]
    student = sidecar["models"]["toy-student"]["zero_shot"]
    chance = 100 / 18
    assert student["hm"] > 2 * chance  # well above chance ...
    assert teacher["hm"] < 90  # ... but far from perfect
    assert teacher["hm"] >= student["hm"] + 8


def test_recorded_student_zero_shot_is_reproducible(sidecar):
    entry = sidecar["models"]["toy-student"]["zero_shot"]
    model, _ = clip.load("toy-student")
    got = zero_shot_base_new(model.eval(), n_per_class=entry["n_per_class"], pretrain_domain=False)
    for key in ("base", "new", "hm"):
        assert got[key] == pytest.approx(entry[key], abs=0.5), key


@pytest.mark.parametrize("name", NAMES)
def test_clip_load_builds_the_expected_encoders(name):
    arch = ARCHITECTURES[name]
    model, preprocess = clip.load(f"toy-{name}")
    assert model.visual.conv1.weight.shape == (arch["vision_width"], 3, 4, 4)
    assert len(model.visual.transformer.resblocks) == arch["vision_layers"]
    assert model.transformer.width == arch["transformer_width"]
    assert len(model.transformer.resblocks) == arch["transformer_layers"]
    assert model.text_projection.shape == (arch["transformer_width"], arch["embed_dim"])
    assert model.visual.input_resolution == 32 and model.context_length == 77
    with torch.no_grad():
        img = model.encode_image(torch.zeros(2, 3, 32, 32))
        txt = model.encode_text(clip.tokenize(["a photo of a red star.", "a blue ring."]))
    assert img.shape == txt.shape == (2, arch["embed_dim"])


def test_cli_writes_weights_and_sidecar(tmp_path):
    entry = main(
        ["--model", "student", "--steps", "3", "--batch-size", "4", "--out-dir", str(tmp_path)]
        + ["--eval-per-class", "1", "--log-every", "0"]
    )
    path = tmp_path / "toy-student.pt"
    assert entry["sha256"] == sha256_of(str(path))
    with open(tmp_path / SIDECAR) as f:
        recorded = json.load(f)["models"]["toy-student"]
    assert recorded["sha256"] == entry["sha256"] and recorded["recipe"]["steps"] == 3
    assert set(torch.load(path, weights_only=True)) == set(_shipped("student"))


def test_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] < 0.01
