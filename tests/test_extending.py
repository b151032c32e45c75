"""docs/EXTENDING.md's worked example: the file in the guide is the file in the repo, it is at
most 45 lines, and it trains, evaluates on base/new/HM and teaches a PromptKD student."""

import json
import os
import re

import train
from tools.export_class_vectors import main as export_main
from trainers.class_vectors import load_class_vectors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_guide_shows_the_example_file_verbatim():
    code = open(os.path.join(ROOT, "trainers", "example_ivlp.py")).read()
    guide = open(os.path.join(ROOT, "docs", "EXTENDING.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    assert blocks and blocks[0] == code
    assert len(code.splitlines()) <= 45


def test_example_trains_evaluates_and_teaches(tmp_path, toy_world):
    common = toy_world.flags
    cfg = [*common, "--config-file", os.path.join(ROOT, "configs/trainers/ExampleIVLP/toy.yaml")]
    opts = [*toy_world.opts, "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base"]
    run = str(tmp_path / "example")
    assert train.main(["--trainer", "ExampleIVLP", *cfg, "--output-dir", run, *opts]) == 0
    res = json.load(open(os.path.join(run, "results.json")))
    assert {"base", "new", "hm"} <= set(res) and res["trainer"] == "ExampleIVLP"
    assert os.path.isfile(os.path.join(run, "VLPromptLearner", "model.pth.tar-1"))

    assert export_main(["--trainer", "ExampleIVLP", *cfg, "--teacher-weights", run, *opts]) == 0
    cv = load_class_vectors(os.path.join(run, "class_vectors.safetensors"))
    assert cv.num_classes == 36 and "image_encoder.VPT" in cv.vision_prompts
    student = [
        "--trainer",
        "PromptKDStudent",
        *common,
        "--config-file",
        os.path.join(ROOT, "configs/trainers/PromptKDStudent/toy.yaml"),
        "--output-dir",
        str(tmp_path / "student"),
        *toy_world.opts,
        "DATASET.NUM_SHOTS",
        "0",
        "TRAINER.PROMPTKD.TEACHER_WEIGHTS",
        run,
    ]
    assert train.main(student) == 0
    assert "hm" in json.load(open(str(tmp_path / "student" / "results.json")))
