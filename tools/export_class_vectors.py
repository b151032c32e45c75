"""Export PromptKD class vectors from any teacher checkpoint (ours or upstream's released ones).

The teacher (``MODEL.BACKBONE.NAME`` with the IVLP prompts of ``TRAINER.PROMPTSRC``) is built
for ALL classes of the dataset, the checkpoint is loaded strictly (only the class-name token
buffers and upstream's frozen ``ZS_image_encoder`` copy are dropped; a missing prompt or a shape
mismatch is an error), and the L2-normalised text features are written with their metadata.
Upstream pickled checkpoints are read with the restricted legacy loader.

Usage (train.py's flags plus two)::

    python tools/export_class_vectors.py --root DATA \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/PromptSRC/vit_l14_c2_ep20_batch8_4+4ctx.yaml \
        --teacher-weights teacher_model/OxfordPets/VLPromptLearner/model-best.pth.tar \
        --output teacher_model/OxfordPets/class_vectors.safetensors [KEY VALUE ...]

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


import clip  # noqa: E402
from dassl.data.datasets import build_dataset  # noqa: E402
from dassl.engine.precision import Precision, resolve_device  # noqa: E402
from dassl.utils.logger import get_logger, setup_logger  # noqa: E402
from trainers.promptkd_teacher import (  # noqa: E402
    TeacherCLIP,
    cast_frozen,
    ivlp_design_details,
    load_teacher_state_dict,
    read_teacher_state_dict,
    store_class_vectors,
)
from trainers.results import full_class_info  # noqa: E402

logger = get_logger(__name__)

__all__ = ["main", "export_class_vectors"]


def export_class_vectors(cfg, teacher_weights: str, output: str) -> str:
    """Build the teacher from ``cfg``, load ``teacher_weights`` strictly, write ``output``."""
    node = cfg.TRAINER.PROMPTSRC
    dataset = build_dataset(cfg)
    names, _, _, _ = full_class_info(dataset)
    sd, file, epoch = read_teacher_state_dict(teacher_weights)
    logger.info(f"Teacher checkpoint: {file} (epoch = {epoch})")
    clip_model, _ = clip.load(
        cfg.MODEL.BACKBONE.NAME, device="cpu", design_details=ivlp_design_details(node)
    )
    model = TeacherCLIP(clip_model, names, node.N_CTX_TEXT, node.CTX_INIT)
    model.requires_grad_(False)
    load_teacher_state_dict(model, sd, file)
    device = resolve_device(cfg.USE_CUDA)
    precision = Precision.from_name(node.PREC, device)
    cast_frozen(model, precision.frozen_dtype).to(device)
    return store_class_vectors(model, cfg, dataset, output, file, precision.autocast)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    import train

    parser = train.build_parser()
    parser.description = "Export PromptKD class vectors from a teacher checkpoint."
    parser.add_argument(
        "--teacher-weights", required=True, help="teacher run dir or checkpoint file"
    )
    parser.add_argument("--output", required=True, help="output .safetensors file")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.trainer:
        args.trainer = "PromptKDTeacher"
    cfg = train.setup_cfg(args)
    setup_logger(None)
    export_class_vectors(cfg, args.teacher_weights, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
