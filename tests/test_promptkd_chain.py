"""PromptKD end to end on tiny CLIPs and ToyShapes: teacher -> class vectors -> student -> eval."""

import json
import os

import pytest
import torch

import clip
import train
from clip.testing import save_state_dict, tiny_vit_state_dict
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from datasets.toy_render import CLASSNAMES
from datasets.toy_shapes import generate_toy_shapes
from trainers.class_vectors import load_class_vectors, sha256_file
from trainers.promptkd_student import PromptKDStudent
from trainers.promptkd_teacher import (
    TeacherCLIP,
    ivlp_design_details,
    load_teacher_state_dict,
    read_teacher_state_dict,
)

PROMPTS = [
    "N_CTX_TEXT",
    "2",
    "N_CTX_VISION",
    "2",
    "PROMPT_DEPTH_TEXT",
    "2",
    "PROMPT_DEPTH_VISION",
    "2",
]


def _node(name, kv):
    return [x if i % 2 else f"TRAINER.{name}.{x}" for i, x in enumerate(kv)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("promptkd")
    root = str(base / "data")
    generate_toy_shapes(root, n_train=2, n_val=1, n_test=1)
    teacher = save_state_dict(
        tiny_vit_state_dict(embed_dim=48, width=128, seed=1), base / "teacher.pt"
    )
    student = save_state_dict(
        tiny_vit_state_dict(embed_dim=32, width=64, seed=2), base / "student.pt"
    )
    common = [
        "--root",
        root,
        "--seed",
        "1",
        "DATASET.NAME",
        "ToyShapes",
        "INPUT.SIZE",
        "(16, 16)",
        "INPUT.TRANSFORMS",
        "['random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE",
        "8",
        "DATALOADER.TEST.BATCH_SIZE",
        "64",
        "OPTIM.NAME",
        "sgd",
        "OPTIM.LR",
        "0.01",
        "OPTIM.MAX_EPOCH",
        "2",
        "OPTIM.LR_SCHEDULER",
        "cosine",
        "TRAIN.PRINT_FREQ",
        "100",
        *_node("PROMPTSRC", PROMPTS),
    ]
    tdir = str(base / "teacher_run")
    rc = train.main(
        [
            "--trainer",
            "PromptKDTeacher",
            "--output-dir",
            tdir,
            *common,
            "MODEL.BACKBONE.NAME",
            teacher,
            "DATASET.NUM_SHOTS",
            "2",
            "DATASET.SUBSAMPLE_CLASSES",
            "base",
            "TRAINER.PROMPTSRC.PREC",
            "fp32",
            "TRAINER.PROMPTSRC.GPA_MEAN",
            "2",
        ]
    )
    assert rc == 0
    student_args = [
        *common,
        "MODEL.BACKBONE.NAME",
        student,
        "DATASET.NUM_SHOTS",
        "0",
        "TRAINER.PROMPTKD.TEACHER_WEIGHTS",
        tdir,
        "TRAINER.PROMPTKD.TEACHER_NAME",
        teacher,
        *_node("PROMPTKD", ["N_CTX_VISION", "2", "PROMPT_DEPTH_VISION", "2", "PREC", "fp32"]),
    ]
    return {
        "base": base,
        "root": root,
        "teacher": teacher,
        "student": student,
        "tdir": tdir,
        "common": common,
        "student_args": student_args,
    }


def _cfg(argv):
    return train.setup_cfg(train.build_parser().parse_args(argv))


def test_teacher_writes_checkpoint_results_and_class_vectors(world):
    tdir = world["tdir"]
    ckpt = os.path.join(tdir, "VLPromptLearner", "model.pth.tar-2")
    assert os.path.isfile(ckpt)
    res = json.load(open(os.path.join(tdir, "results.json")))
    assert set(res) >= {"base", "new", "hm", "epoch", "seed", "dataset", "trainer", "config_hash"}
    assert (
        res["epoch"] == 2 and res["trainer"] == "PromptKDTeacher" and res["dataset"] == "ToyShapes"
    )
    log = open(os.path.join(tdir, "log.txt")).read()
    assert "base classes (18 classes" in log and "new classes (18 classes" in log
    assert log.count("=> result") == 2
    cv = load_class_vectors(
        os.path.join(tdir, "class_vectors.safetensors"), classnames=CLASSNAMES, dim=48
    )
    assert cv.base_classes == range(0, 18) and cv.new_classes == range(18, 36)
    assert cv.teacher_checkpoint_sha256 == sha256_file(ckpt)
    assert cv.prompt["depth_text"] == 2 and cv.teacher_backbone == world["teacher"]
    # vectors = trained text prompts applied to every class name (incl. new ones)
    sd, _, _ = read_teacher_state_dict(tdir)
    model, _ = clip.load(
        world["teacher"],
        design_details=ivlp_design_details(_cfg(world["common"]).TRAINER.PROMPTSRC),
    )
    t = TeacherCLIP(model, CLASSNAMES, 2, "a photo of a")
    load_teacher_state_dict(t, sd, tdir)
    with torch.no_grad():
        assert torch.allclose(t.text_features(), cv.vectors, atol=1e-5)


def test_student_base2novel_end_to_end_and_eval_only(world):
    out = str(world["base"] / "student_run")
    rc = train.main(
        [
            "--trainer",
            "PromptKD",
            "--output-dir",
            out,
            *world["student_args"],
            "TRAINER.MODAL",
            "base2novel",
            "TEST.FINAL_MODEL",
            "best_val",
        ]
    )
    assert rc == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["hm"] == pytest.approx(
        2 * res["base"] * res["new"] / max(res["base"] + res["new"], 1e-9), abs=1e-3
    )
    log = open(os.path.join(out, "log.txt")).read()
    assert "best_val is ignored" in log and "model-best" not in log
    assert not os.path.exists(os.path.join(out, "VLPromptLearner", "model-best.pth.tar"))
    ev = str(world["base"] / "student_eval")
    rc = train.main(
        [
            "--trainer",
            "PromptKD",
            "--output-dir",
            ev,
            "--eval-only",
            "--model-dir",
            out,
            "--load-epoch",
            "2",
            *world["student_args"],
            "TRAINER.MODAL",
            "base2novel",
        ]
    )
    assert rc == 0
    res2 = json.load(open(os.path.join(ev, "results.json")))
    assert (res2["base"], res2["new"]) == (res["base"], res["new"])
    assert "Loading teacher image encoder" not in open(os.path.join(ev, "log.txt")).read()


def test_student_gradients_frozen_teacher_no_text_tower(world):
    cfg = _cfg(
        [
            "--trainer",
            "PromptKDStudent",
            "--output-dir",
            str(world["base"] / "grad"),
            *world["student_args"],
            "TRAINER.MODAL",
            "cross",
        ]
    )
    set_random_seed(1)
    trainer = build_trainer(cfg)
    trainer.distiller = trainer.build_distiller()
    d = trainer.distiller
    assert not any(hasattr(m, "token_embedding") or hasattr(m, "ln_final") for m in d.modules())
    assert not hasattr(d, "transformer") and all(not p.requires_grad for p in d.parameters())
    trainer.set_model_mode("train")
    d.train()
    assert not d.training and not any(m.training for m in d.modules())
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(batch)
    with_grad = {n for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert with_grad and all("VPT" in n or n.startswith("VPT_image_trans.") for n in with_grad)
    assert "image_encoder.VPT" in with_grad
    assert all(p.grad is None for p in d.parameters())


class _PermutedLabels(PromptKDStudent):
    def train_data_source(self):
        from dassl.data.datasets import Datum

        items = super().train_data_source()
        n = len(CLASSNAMES)
        return [Datum(impath=d.impath, label=(d.label * 7 + 3) % n, classname="x") for d in items]


@pytest.mark.slow
def test_training_never_reads_labels(world):
    states = []
    for cls in (PromptKDStudent, _PermutedLabels):
        cfg = _cfg(
            [
                "--trainer",
                "PromptKDStudent",
                "--output-dir",
                str(world["base"] / f"perm_{cls.__name__}"),
                *world["student_args"],
                "TRAINER.MODAL",
                "base2novel",
                "TEST.NO_TEST",
                "True",
            ]
        )
        set_random_seed(1)
        trainer = cls(cfg)
        trainer.train()
        states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("prec,frozen_dtype", [("bf16", torch.bfloat16), ("amp", torch.float32)])
def test_bf16_paths_run(world, prec, frozen_dtype):
    """bf16 and amp (bf16 autocast on CPU) train with fp32 master weights."""
    for name, extra in (
        ("PromptKDStudent", ["TRAINER.PROMPTKD.PREC", prec, "TRAINER.MODAL", "cross"]),
        (
            "PromptKDTeacher",
            [
                "TRAINER.PROMPTSRC.PREC",
                prec,
                "MODEL.BACKBONE.NAME",
                world["teacher"],
                "DATASET.NUM_SHOTS",
                "1",
                "DATASET.SUBSAMPLE_CLASSES",
                "base",
            ],
        ),
    ):
        cfg = _cfg(
            [
                "--trainer",
                name,
                "--output-dir",
                str(world["base"] / f"{prec}_{name}"),
                *world["student_args"],
                *extra,
            ]
        )
        trainer = build_trainer(cfg)
        if name == "PromptKDStudent":
            trainer.distiller = trainer.build_distiller()
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = 0, 2
        summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
        assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters() if p.requires_grad)
        frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
        assert frozen and all(p.dtype == frozen_dtype for p in frozen)
