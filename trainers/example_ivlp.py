"""The worked example of docs/EXTENDING.md: IVLP prompts, label-smoothed cross-entropy."""

from collections.abc import Sequence

import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .prompt_learner import PromptedCLIP, VLPromptLearner
from .prompt_trainer import PromptTrainer, ivlp_design_details


@TRAINER_REGISTRY.register()
class ExampleIVLP(PromptTrainer):
    """Deep text + vision prompts on a frozen CLIP; the loss smooths the labels."""

    node_name = "EXAMPLEIVLP"  # this trainer's config node: cfg.TRAINER.EXAMPLEIVLP
    model_name = "VLPromptLearner"  # checkpoints: <OUTPUT_DIR>/VLPromptLearner/model.pth.tar-N
    config_defaults = {
        "TRAINER.EXAMPLEIVLP": {
            "N_CTX_TEXT": 2,
            "N_CTX_VISION": 2,
            "PROMPT_DEPTH_TEXT": 9,
            "PROMPT_DEPTH_VISION": 9,
            "CTX_INIT": "a photo of a",
            "PREC": "fp16",
            "LABEL_SMOOTHING": 0.1,
        }
    }

    def build_prompted_model(self, classnames: Sequence[str]) -> PromptedCLIP:
        node = self.node
        clip_model = self.load_clip(ivlp_design_details(node))  # MODEL.BACKBONE.NAME, prompted
        learner = VLPromptLearner(classnames, clip_model, node.N_CTX_TEXT, node.CTX_INIT)
        return PromptedCLIP(clip_model, learner)

    def forward_backward(self, batch: dict) -> dict[str, float]:
        images, labels = batch["img"].to(self.device), batch["label"].to(self.device)
        with self.precision.autocast():
            logits = self.model_ddp(images).float()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.node.LABEL_SMOOTHING)
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}
