"""Export PromptKD class vectors from a run of any registered trainer with a text tower.

``--trainer NAME`` (default ``PromptKDTeacher``) is built from the config (train.py's flags and
``KEY VALUE`` opts, so give the same config files as for training), ``--teacher-weights`` (a run
dir or checkpoint of that trainer; upstream pickled checkpoints are read with the restricted
legacy loader) is loaded strictly except the class-name buffers, and the file written holds the
L2-normalised text features of ALL classes of the dataset, the teacher's frozen vision prompts
and its metadata (:mod:`trainers.class_vectors`). ``PromptKDStudent`` distils from it with
``TRAINER.PROMPTKD.TEACHER_WEIGHTS <run dir>`` (or ``CLASS_VECTORS <file>``).

For a zero-shot CLIP of any size: ``--trainer ZeroshotCLIP --teacher-weights <CLIP name or
path>`` (template set ``TRAINER.ZSCLIP.TEMPLATES``). ``--output`` defaults to
``<teacher run dir>/class_vectors.safetensors``.

Usage::

    python tools/export_class_vectors.py --root DATA \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml --trainer MaPLe \
        --teacher-weights output/maple/OxfordPets [--output FILE] [KEY VALUE ...]

For cross-dataset distillation, give the *target* dataset config and the source (ImageNet)
teacher: the trained prompts are applied to the target's class names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import InvalidInputError  # noqa: E402
from dassl.utils.logger import get_logger, setup_logger  # noqa: E402
from trainers.class_vectors import CLASS_VECTORS_FILE, write_teacher_class_vectors  # noqa: E402

logger = get_logger(__name__)

__all__ = ["main", "export_class_vectors", "default_output", "load_teacher"]


def default_output(teacher_weights: str) -> str:
    """``<run dir>/class_vectors.safetensors`` for a run dir or ``<run>/<model>/<file>``."""
    if os.path.isdir(teacher_weights):
        return os.path.join(teacher_weights, CLASS_VECTORS_FILE)
    if os.path.isfile(teacher_weights):
        run = os.path.dirname(os.path.dirname(os.path.abspath(teacher_weights)))
        return os.path.join(run, CLASS_VECTORS_FILE)
    raise InvalidInputError(
        f"--output is required when --teacher-weights ({teacher_weights}) is not a run dir or "
        "checkpoint file (e.g. a CLIP name)"
    )


def load_teacher(cfg, teacher_weights: str):
    """``(trainer, weights file)``: ``cfg.TRAINER.NAME`` built and loaded from ``teacher_weights``."""
    trainer = build_trainer(cfg)
    missing = [
        m
        for m in ("load_weights", "teacher_class_vectors", "teacher_vision_prompts")
        if not hasattr(trainer, m)
    ]
    if missing:
        raise InvalidInputError(
            f"Trainer {cfg.TRAINER.NAME} does not follow the teacher protocol (missing "
            f"{missing}); subclass trainers.prompt_trainer.PromptTrainer or implement them"
        )
    return trainer, trainer.load_weights(teacher_weights)


def export_class_vectors(cfg, teacher_weights: str, output: str) -> str:
    """Build ``cfg.TRAINER.NAME``, load ``teacher_weights``, write the class vectors."""
    trainer, file = load_teacher(cfg, teacher_weights)
    return write_teacher_class_vectors(trainer, output, file or None)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    import train

    parser = train.build_parser()
    parser.description = "Export PromptKD class vectors from a run of any prompt trainer."
    parser.add_argument(
        "--teacher-weights",
        required=True,
        help="run dir or checkpoint of --trainer; for ZeroshotCLIP a CLIP name or path",
    )
    parser.add_argument("--output", default="", help="output .safetensors file")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.trainer:
        args.trainer = "PromptKDTeacher"
    if args.trainer in ("ZeroshotCLIP", "ZeroshotCLIP2"):
        args.backbone = args.teacher_weights
    output = args.output or default_output(args.teacher_weights)
    cfg = train.setup_cfg(args)
    setup_logger(None)
    export_class_vectors(cfg, args.teacher_weights, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
