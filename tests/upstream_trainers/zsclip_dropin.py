"""A zero-shot trainer written the way upstream ``trainers/zsclip.py`` files are: it lives in
the ``trainers`` package next to ``coop.py`` and takes its CLIP loader and templates from there
with relative imports, and registers the name of one of our built-in trainers."""

import torch

from clip import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX

from .coop import load_clip_to_cpu
from .imagenet_templates import IMAGENET_TEMPLATES_SELECT


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(TrainerX):
    def build_model(self):
        classnames = self.dm.dataset.classnames
        clip_model = load_clip_to_cpu(self.cfg)
        clip_model.to(self.device)
        for params in clip_model.parameters():
            params.requires_grad_(False)
        mean_text_features = 0
        for template in IMAGENET_TEMPLATES_SELECT[:3]:
            prompts = [template.format(c.replace("_", " ")) for c in classnames]
            prompts = torch.cat([clip.tokenize(p) for p in prompts]).to(self.device)
            with torch.no_grad():
                text_features = clip_model.encode_text(prompts)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            mean_text_features = mean_text_features + text_features
        mean_text_features = mean_text_features / 3
        self.text_features = mean_text_features / mean_text_features.norm(dim=-1, keepdim=True)
        self.clip_model = clip_model

    def model_inference(self, image):
        image_features = self.clip_model.encode_image(image)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        logit_scale = self.clip_model.logit_scale.exp()
        return logit_scale * image_features @ self.text_features.t()
