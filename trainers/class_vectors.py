"""Pre-stored teacher class vectors (PromptKD's "shared class vectors").

The teacher's L2-normalised text features of ALL classes of a dataset (base and new), computed
once with the trained text prompts, are the student's classifier: the teacher text encoder is
never run during distillation or evaluation. The file is a ``.safetensors`` with one tensor
``class_vectors`` (C x D, float32) and string metadata (safetensors only stores strings; lists
and dicts are JSON):

| key | meaning |
|---|---|
| ``format_version`` | :data:`FORMAT_VERSION` |
| ``classnames`` | JSON list, label order |
| ``base_classes`` / ``new_classes`` | JSON ``[start, stop]`` of the label ranges |
| ``dataset`` | ``DATASET.NAME`` |
| ``teacher_backbone`` | CLIP name or path of the teacher |
| ``teacher_checkpoint_sha256`` | SHA-256 of the teacher checkpoint file ("" if none) |
| ``prompt`` | JSON: n_ctx_text, n_ctx_vision, depth_text, depth_vision, ctx_init |
| ``feature_dim`` | D |
| ``logit_scale`` | the teacher's ``logit_scale.exp()`` |
| ``teacher_trainer`` | the trainer the vectors come from (e.g. ``MaPLe``) |
| ``vision_prompts`` | ``"embedded"`` when the file also holds the teacher's frozen vision prompts |

With ``vision_prompts`` the file carries, besides ``class_vectors``, the teacher's vision
prompts in IVLP layout (``image_encoder.VPT``, ``image_encoder.transformer.resblocks.N.VPT_shallow``;
none for a prompt-free tower): base CLIP ``teacher_backbone`` + these prompts is the teacher's
image tower, whatever method trained it (see :mod:`trainers.prompt_trainer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from dassl.utils.errors import InputFileNotFoundError, InvalidInputError, UserInputError

__all__ = [
    "CLASS_VECTORS_FILE",
    "FORMAT_VERSION",
    "TENSOR_KEY",
    "ClassVectors",
    "ClassVectorMismatch",
    "ClassVectorFileError",
    "save_class_vectors",
    "load_class_vectors",
    "sha256_file",
]

FORMAT_VERSION = 1
TENSOR_KEY = "class_vectors"
CLASS_VECTORS_FILE = "class_vectors.safetensors"


class ClassVectorMismatch(ValueError, UserInputError):
    """The class-vector file does not fit the dataset or the model."""


class ClassVectorFileError(InvalidInputError):
    """The class-vector file is truncated, corrupt or not a class-vector file."""


_REEXPORT = (
    "re-create it: rerun the teacher (it writes <out>/class_vectors.safetensors) or "
    "tools/export_class_vectors.py"
)


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (identifies the teacher checkpoint the vectors came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ClassVectors:
    """Loaded class vectors plus their provenance."""

    vectors: torch.Tensor  # (C, D) float32, rows L2-normalised
    classnames: list[str]
    base_classes: range
    new_classes: range
    dataset: str = ""
    teacher_backbone: str = ""
    teacher_checkpoint_sha256: str = ""
    prompt: dict = field(default_factory=dict)
    logit_scale: float = 100.0
    path: str = ""
    teacher_trainer: str = ""
    vision_prompts: dict | None = None  # image_encoder.* prompt tensors; None = not embedded

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.vectors.shape[0])

    def subset(self, class_range: range | None) -> torch.Tensor:
        """Rows of ``class_range`` (None = all), e.g. ``cv.subset(cv.new_classes)``."""
        if class_range is None:
            return self.vectors
        return self.vectors[class_range.start : class_range.stop]

    def validate(self, classnames: Sequence[str] | None = None, dim: int | None = None) -> None:
        """Raise :class:`ClassVectorMismatch` naming the first mismatch and the file."""
        where = self.path or "<class vectors>"
        if classnames is not None:
            expected = list(classnames)
            for i in range(max(len(expected), len(self.classnames))):
                exp = expected[i] if i < len(expected) else "<none>"
                got = self.classnames[i] if i < len(self.classnames) else "<none>"
                if exp != got:
                    raise ClassVectorMismatch(
                        f"Class vectors in {where} do not match the dataset's class list: first "
                        f"mismatch at index {i}: expected {exp!r}, found {got!r} (dataset has "
                        f"{len(expected)} classes, file has {len(self.classnames)}). Export vectors "
                        f"for this dataset with tools/export_class_vectors.py and point "
                        f"TRAINER.PROMPTKD.CLASS_VECTORS to them."
                    )
        if dim is not None and dim != self.dim:
            raise ClassVectorMismatch(
                f"Class vectors in {where} have dimension {self.dim} but the model expects {dim} "
                f"(teacher/projector output). They come from teacher {self.teacher_backbone!r}; use "
                f"the vectors of the teacher you distil from."
            )


def save_class_vectors(
    path: str,
    vectors: torch.Tensor,
    classnames: Sequence[str],
    *,
    base_classes: range,
    new_classes: range,
    dataset: str = "",
    teacher_backbone: str = "",
    teacher_checkpoint_sha256: str = "",
    prompt: dict | None = None,
    logit_scale: float = 100.0,
    teacher_trainer: str = "",
    vision_prompts: dict[str, torch.Tensor] | None = None,
) -> str:
    """Normalise and write ``vectors`` atomically (tmp file + rename); returns ``path``."""
    from safetensors.torch import save_file

    if vectors.ndim != 2 or vectors.shape[0] != len(classnames):
        raise ValueError(
            f"class vectors must be (num_classes={len(classnames)}, dim), got {tuple(vectors.shape)}"
        )
    v = vectors.detach().float().cpu()
    v = (v / v.norm(dim=-1, keepdim=True)).contiguous()
    meta = {
        "format_version": str(FORMAT_VERSION),
        "classnames": json.dumps(list(classnames)),
        "base_classes": json.dumps([base_classes.start, base_classes.stop]),
        "new_classes": json.dumps([new_classes.start, new_classes.stop]),
        "dataset": dataset,
        "teacher_backbone": teacher_backbone,
        "teacher_checkpoint_sha256": teacher_checkpoint_sha256,
        "prompt": json.dumps(prompt or {}, sort_keys=True),
        "feature_dim": str(v.shape[1]),
        "logit_scale": repr(float(logit_scale)),
        "teacher_trainer": teacher_trainer,
    }
    tensors = {TENSOR_KEY: v}
    if vision_prompts is not None:
        meta["vision_prompts"] = "embedded"
        for k, t in vision_prompts.items():
            if not k.startswith("image_encoder."):
                raise ValueError(f"vision prompt {k!r} must be an image_encoder.* key")
            tensors[k] = t.detach().float().cpu().contiguous()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".class_vectors-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_class_vectors(
    path: str, classnames: Sequence[str] | None = None, dim: int | None = None
) -> ClassVectors:
    """Read a class-vector file; validate against ``classnames``/``dim`` when given."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise InputFileNotFoundError(
            f"Class-vector file not found: {path}. Train a teacher (PromptKDTeacher writes "
            f"<out>/class_vectors.safetensors) or export one with tools/export_class_vectors.py, "
            f"then set TRAINER.PROMPTKD.CLASS_VECTORS or TRAINER.PROMPTKD.TEACHER_WEIGHTS."
        )
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if TENSOR_KEY not in f.keys():
                raise ClassVectorFileError(
                    f"{path} has no tensor {TENSOR_KEY!r}; not a class-vector file: {_REEXPORT}"
                )
            vectors = f.get_tensor(TENSOR_KEY).float()
            prompts = None
            if meta.get("vision_prompts") == "embedded":
                prompts = {k: f.get_tensor(k) for k in f.keys() if k.startswith("image_encoder.")}
    except UserInputError:
        raise
    except Exception as e:  # safetensors' SafetensorError ("invalid header length"), OSError...
        raise ClassVectorFileError(
            f"Class-vector file {path} (TRAINER.PROMPTKD.CLASS_VECTORS) is truncated or corrupt "
            f"({e}); {_REEXPORT}"
        ) from e
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise ClassVectorFileError(
            f"{path}: class-vector format version {version} is not supported (expected "
            f"{FORMAT_VERSION}); re-export it with tools/export_class_vectors.py"
        )
    try:
        names = json.loads(meta["classnames"])
        b0, b1 = json.loads(meta["base_classes"])
        n0, n1 = json.loads(meta["new_classes"])
    except (KeyError, ValueError, TypeError) as e:
        raise ClassVectorFileError(
            f"{path}: metadata {e} missing or malformed; not a class-vector file: {_REEXPORT}"
        ) from e
    cv = ClassVectors(
        vectors=vectors,
        classnames=list(names),
        base_classes=range(b0, b1),
        new_classes=range(n0, n1),
        dataset=meta.get("dataset", ""),
        teacher_backbone=meta.get("teacher_backbone", ""),
        teacher_checkpoint_sha256=meta.get("teacher_checkpoint_sha256", ""),
        prompt=json.loads(meta.get("prompt", "{}")),
        logit_scale=float(meta.get("logit_scale", "100.0")),
        path=path,
        teacher_trainer=meta.get("teacher_trainer", ""),
        vision_prompts=prompts,
    )
    if len(cv.classnames) != cv.num_classes:
        raise ClassVectorFileError(
            f"{path}: {cv.num_classes} vectors but {len(cv.classnames)} class names in metadata"
        )
    cv.validate(classnames, dim)
    return cv


def write_teacher_class_vectors(trainer, output: str, checkpoint: str | None) -> str:
    """Write the class vectors of ALL classes of ``trainer``'s dataset, with its vision prompts.

    ``trainer`` follows the teacher protocol (:mod:`trainers.prompt_trainer`); ``checkpoint``
    (the weights file it was loaded from) is recorded by its SHA-256. Used by
    ``PromptKDTeacher`` after training and by ``tools/export_class_vectors.py``.
    """
    from dassl.engine.evaluation import full_class_info
    from dassl.utils.logger import get_logger

    cfg = trainer.cfg
    names, base, new, _ = full_class_info(trainer.dm.dataset)
    vectors = trainer.teacher_class_vectors(names)
    save_class_vectors(
        output,
        vectors,
        names,
        base_classes=base,
        new_classes=new,
        dataset=cfg.DATASET.NAME,
        teacher_backbone=cfg.MODEL.BACKBONE.NAME,
        teacher_checkpoint_sha256=sha256_file(checkpoint) if checkpoint else "",
        prompt=trainer.prompt_settings(),
        logit_scale=trainer.teacher_logit_scale(),
        teacher_trainer=cfg.TRAINER.NAME,
        vision_prompts=trainer.teacher_vision_prompts(),
    )
    get_logger(__name__).info(
        f"Class vectors of {len(names)} classes ({vectors.shape[1]}-d) saved to {output}"
    )
    return output
