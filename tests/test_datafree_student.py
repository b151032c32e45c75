"""Students distilled on a synthesized folder (TRAIN_SOURCE): labels never read; KDStudent."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import train
from datasets.toy_shapes_dg import generate_toy_shapes_dg
from tests.datafree_helpers import export_zeroshot_vectors, synthesized_folder
from trainers.kd_student import build_backbone


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("datafree")
    generate_toy_shapes_dg(str(base / "data"), n_train=1, n_val=1, n_test=1)
    vectors = export_zeroshot_vectors(str(base / "data"), str(base / "teacher" / "cv.safetensors"))
    perm = np.random.default_rng(0).permutation(36)
    synth = synthesized_folder(str(base / "synth"))
    permuted = synthesized_folder(str(base / "synth_permuted"), permutation=perm)
    return {"base": base, "vectors": vectors, "synth": synth, "permuted": permuted}


def _distil(world, out, trainer, source, *extra):
    argv = ["--root", str(world["base"] / "data"), "--output-dir", str(out), "--seed", "1"]
    argv += ["--trainer", trainer, "--config-file", "configs/trainers/PromptKDStudent/toy.yaml"]
    argv += ["--dataset-config-file", "configs/datasets/toy_shapes_dg.yaml"]
    argv += ["TRAINER.MODAL", "cross", "TRAINER.PROMPTKD.TEACHER_WEIGHTS", "toy-teacher"]
    argv += ["TRAINER.PROMPTKD.CLASS_VECTORS", world["vectors"]]
    argv += ["TRAINER.PROMPTKD.TRAIN_SOURCE", source, "OPTIM.MAX_EPOCH", "1", *extra]
    assert train.main(argv) == 0
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f), open(os.path.join(out, "log.txt")).read()


def _weights(out, model_name):
    ckpt = torch.load(os.path.join(out, model_name, "model.pth.tar-1"), weights_only=True)
    return ckpt["state_dict"]


def test_prompt_student_distils_on_synthesized_images_and_never_reads_labels(world):
    a, log = _distil(world, world["base"] / "a", "PromptKDStudent", world["synth"])
    b, _ = _distil(world, world["base"] / "b", "PromptKDStudent", world["permuted"])
    assert "Distilling on 36 unlabelled training images" in log  # the folder, not ToyShapesDG
    wa, wb = (
        _weights(world["base"] / "a", "VLPromptLearner"),
        _weights(world["base"] / "b", "VLPromptLearner"),
    )
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert a["domains"] == b["domains"] and sorted(a["domains"]) == sorted(
        ["photo", "smooth", "sketch", "cartoon"]
    )
    # ...while other pixels give other weights: the student does learn from the folder
    other = synthesized_folder(str(world["base"] / "synth_other"), seed=1)
    _distil(world, world["base"] / "c", "PromptKDStudent", other)
    wc = _weights(world["base"] / "c", "VLPromptLearner")
    assert not torch.equal(wa["image_encoder.VPT"], wc["image_encoder.VPT"])


def test_kd_student_tiny_cnn_trains_with_the_same_results_files(world):
    out = world["base"] / "cnn"
    res, log = _distil(world, out, "KDStudent", world["synth"], "MODEL.BACKBONE.NAME", "tiny_cnn")
    assert res["trainer"] == "KDStudent" and set(res["domains"]) == {
        "photo", "smooth", "sketch", "cartoon"
    }  # fmt: skip
    assert res["accuracy"] == pytest.approx(sum(res["domains"].values()) / 4, abs=1e-3)
    assert "Distilling on 36 unlabelled training images" in log
    w = _weights(out, "KDStudent")
    assert "backbone.features.0.weight" in w and "projector.layers.0.weight" in w


def test_torchvision_backbone_weights_from_a_local_file_only(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = str(tmp_path / "r18.pth")
    torch.save(reference.state_dict(), path)
    net = build_backbone("resnet18", init_weights=path)
    assert net.output_dim == 512
    assert torch.equal(net.conv1.weight, reference.conv1.weight)
    net.eval()
    reference.eval()
    x = torch.randn(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    assert torch.allclose(net(x), reference(x))
    # random init otherwise (no download), and unknown names list the valid ones
    assert build_backbone("resnet18", pretrained=False).output_dim == 512
    with pytest.raises(ValueError, match="tiny_cnn"):
        build_backbone("resnet_nope")
    with pytest.raises(FileNotFoundError, match="MODEL.INIT_WEIGHTS"):
        build_backbone("resnet18", init_weights=str(tmp_path / "missing.pth"))


def test_zeroshot_clip_teacher_exports_template_features(world, tmp_path):
    """Class vectors of a zero-shot CLIP = its normalised template features, averaged, by hand."""
    import clip
    from datasets.toy_render import CLASSNAMES
    from trainers.class_vectors import load_class_vectors
    from trainers.imagenet_templates import IMAGENET_TEMPLATES_SELECT

    model, _ = clip.load("toy-teacher", device="cpu")

    def by_hand(templates):
        total = 0
        for t in templates:
            with torch.no_grad():
                f = model.encode_text(clip.tokenize([t.format(c) for c in CLASSNAMES])).float()
            total = total + f / f.norm(dim=-1, keepdim=True)
        return total / total.norm(dim=-1, keepdim=True)

    single = load_class_vectors(world["vectors"], classnames=CLASSNAMES)
    assert torch.allclose(single.vectors, by_hand(["a photo of a {}."]), atol=1e-5)
    path = str(tmp_path / "ensemble.safetensors")
    root = str(world["base"] / "data")
    export_zeroshot_vectors(root, path, "toy-teacher", "TRAINER.ZSCLIP.TEMPLATES", "ensemble")
    ensemble = load_class_vectors(path, classnames=CLASSNAMES)
    expected = by_hand([*IMAGENET_TEMPLATES_SELECT, "a photo of a {}."])
    assert torch.allclose(ensemble.vectors, expected, atol=1e-5)
    assert not torch.allclose(ensemble.vectors, single.vectors, atol=1e-3)


def test_resnet18_config_merges_for_kd_student(repo_root):
    cfg = train.setup_cfg(
        train.build_parser().parse_args(
            [
                "--trainer", "KDStudent",
                "--config-file", os.path.join(repo_root, "configs/trainers/KDStudent/rn18.yaml"),
                "--dataset-config-file", os.path.join(repo_root, "configs/datasets/pacs.yaml"),
                "TRAINER.PROMPTKD.TEACHER_WEIGHTS", "ViT-B/16",
                "TRAINER.PROMPTKD.TRAIN_SOURCE", "synth/contrastive",
            ]
        )
    )  # fmt: skip
    assert cfg.MODEL.BACKBONE.NAME == "resnet18" and cfg.TRAINER.MODAL == "cross"
    assert list(cfg.DATASET.TARGET_DOMAINS) == ["art_painting", "cartoon", "photo", "sketch"]
    assert cfg.TRAINER.PROMPTKD.TRAIN_SOURCE == "synth/contrastive"
