"""Stage 1 of PromptKD: a large CLIP teacher trained with PromptSRC (IVLP deep prompts).

``PromptKDTeacher`` is :class:`trainers.promptsrc.PromptSRC` (reading ``TRAINER.PROMPTSRC``;
upstream ``vit_l14_c2_ep20_batch8_4+4ctx.yaml`` merges unchanged) that, after training, stores
the class vectors of ALL classes (base and new) of the dataset, with its frozen vision prompts,
in ``<OUTPUT_DIR>/class_vectors.safetensors`` (:mod:`trainers.class_vectors`). Any other
trainer becomes a teacher through ``tools/export_class_vectors.py``, which writes the same file.
"""

from __future__ import annotations

import os

from dassl.engine import TRAINER_REGISTRY
from dassl.engine import distributed as dist
from dassl.utils.logger import get_logger

from .activation_memory import configure_teacher_memory
from .class_vectors import CLASS_VECTORS_FILE, write_teacher_class_vectors
from .ivlp import IVLPCLIP
from .prompt_trainer import ivlp_design_details
from .promptsrc import PromptSRC
from .teacher_io import load_teacher_state_dict, read_teacher_state_dict, resolve_teacher_checkpoint

__all__ = [
    "MODEL_NAME",
    "CLASS_VECTORS_FILE",
    "TeacherCLIP",
    "PromptKDTeacher",
    "ivlp_design_details",
    "load_teacher_state_dict",
    "read_teacher_state_dict",
]

logger = get_logger(__name__)

MODEL_NAME = "VLPromptLearner"
TeacherCLIP = IVLPCLIP  # the prompted teacher: upstream ``CustomCLIP`` with IVLP prompts


@TRAINER_REGISTRY.register(builtin=True)
class PromptKDTeacher(PromptSRC):
    """PromptSRC teacher that also writes the class vectors after training.

    Memory keys under ``TRAINER.PROMPTSRC`` (:mod:`trainers.activation_memory`; both exact):
    ``GRAD_CHECKPOINT_TEXT`` / ``GRAD_CHECKPOINT_IMAGE`` recompute each transformer block of
    the text / image tower in backward instead of storing its activations; ``CLASS_CHUNK`` runs
    the prompted text encoder over that many classes at a time, each chunk recomputed in
    backward (0 = all at once). Off by default; turn them on when the teacher step does not fit
    (e.g. ImageNet's 500 base classes on a 16-32 GB GPU; see docs/PERFORMANCE.md).
    """

    config_defaults = {
        "TRAINER.PROMPTSRC": {
            "GRAD_CHECKPOINT_TEXT": False,
            "GRAD_CHECKPOINT_IMAGE": False,
            "CLASS_CHUNK": 0,
        }
    }

    def build_model(self) -> None:
        super().build_model()
        node = self.node
        configure_teacher_memory(
            self.model, node.GRAD_CHECKPOINT_TEXT, node.GRAD_CHECKPOINT_IMAGE, node.CLASS_CHUNK
        )

    def after_train(self) -> None:
        super().after_train()
        self.write_class_vectors()

    def write_class_vectors(self, path: str | None = None) -> str | None:
        """Store the teacher text features of ALL classes (rank 0); returns the file path.

        They come from the weights deployed for the final evaluation, which the engine's one
        rule names (:func:`dassl.engine.checkpointer.find_checkpoint`): ``model-best`` under
        ``TEST.FINAL_MODEL best_val`` (the best on val of the single epochs and, at the last
        epoch, the GPA aggregate), else the last save (GPA applied). The metadata's SHA-256 is
        that file's, which holds exactly the weights in memory here.
        """
        if not dist.is_main_process():
            return None
        try:
            ckpt = resolve_teacher_checkpoint(self.output_dir, (MODEL_NAME,))
        except FileNotFoundError:
            ckpt = None
        path = path or os.path.join(self.output_dir, CLASS_VECTORS_FILE)
        return write_teacher_class_vectors(self, path, ckpt)
