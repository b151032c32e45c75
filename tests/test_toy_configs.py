"""The toy trainer configs merge and match what the toy CLIPs were pretrained with."""

import os

import pytest

import clip
from tools.pretrain_toy_clip import ARCHITECTURES, PIXEL_MEAN, PIXEL_STD
from train import build_parser, setup_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "ZeroshotCLIP": "configs/trainers/ZeroshotCLIP/toy.yaml",
    "PromptKDTeacher": "configs/trainers/PromptKDTeacher/toy.yaml",
    "PromptKDStudent": "configs/trainers/PromptKDStudent/toy.yaml",
}


@pytest.mark.parametrize("trainer", sorted(CONFIGS))
def test_toy_config_matches_pretraining(trainer, tmp_path):
    args = build_parser().parse_args(
        [
            "--root", str(tmp_path),
            "--trainer", trainer,
            "--dataset-config-file", os.path.join(ROOT, "configs/datasets/toy_shapes.yaml"),
            "--config-file", os.path.join(ROOT, CONFIGS[trainer]),
            "--output-dir", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    cfg = setup_cfg(args)
    assert cfg.DATASET.NAME == "ToyShapes"
    backbone = cfg.MODEL.BACKBONE.NAME
    assert backbone in clip._MODELS and backbone.startswith("toy-")
    arch = ARCHITECTURES[backbone.removeprefix("toy-")]
    assert tuple(cfg.INPUT.SIZE) == (arch["image_resolution"],) * 2
    # zero-shot through the pipeline equals the recorded numbers only with the same input
    assert "normalize" in cfg.INPUT.TRANSFORMS
    assert tuple(cfg.INPUT.PIXEL_MEAN) == pytest.approx(PIXEL_MEAN)
    assert tuple(cfg.INPUT.PIXEL_STD) == pytest.approx(PIXEL_STD)
    if trainer == "PromptKDTeacher":
        node = cfg.TRAINER.PROMPTSRC
        assert node.PROMPT_DEPTH_VISION <= arch["vision_layers"]
        assert node.PROMPT_DEPTH_TEXT <= arch["transformer_layers"]
        assert node.GPA_MEAN <= cfg.OPTIM.MAX_EPOCH
    if trainer == "PromptKDStudent":
        kd = cfg.TRAINER.PROMPTKD
        assert kd.TEACHER_NAME == "toy-teacher"
        assert kd.PROMPT_DEPTH_VISION <= arch["vision_layers"]
