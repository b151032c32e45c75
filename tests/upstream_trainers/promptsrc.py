# PromptSRC code base style (trainers/promptsrc.py), without Gaussian prompt aggregation.
import torch
import torch.nn as nn
from torch.nn import functional as F

from clip import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer
from trainers.imagenet_templates import IMAGENET_TEMPLATES


def load_clip_to_cpu(cfg, zero_shot_model=False):
    url = clip._MODELS[cfg.MODEL.BACKBONE.NAME]
    model_path = clip._download(url)
    state_dict = torch.load(model_path, map_location="cpu")
    if not zero_shot_model:
        node = cfg.TRAINER.PROMPTSRC
        design_details = {
            "trainer": "IVLP",
            "vision_depth": node.PROMPT_DEPTH_VISION,
            "language_depth": node.PROMPT_DEPTH_TEXT,
            "vision_ctx": node.N_CTX_VISION,
            "language_ctx": node.N_CTX_TEXT,
        }
    else:
        design_details = {
            "trainer": "IVLP",
            "vision_depth": 0,
            "language_depth": 0,
            "vision_ctx": 0,
            "language_ctx": 0,
        }
    return clip.build_model(state_dict, design_details)


class VLPromptLearner(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        n_ctx = cfg.TRAINER.PROMPTSRC.N_CTX_TEXT
        ctx_init = cfg.TRAINER.PROMPTSRC.CTX_INIT.replace("_", " ")
        dtype = clip_model.dtype
        with torch.no_grad():
            embedding = clip_model.token_embedding(clip.tokenize(ctx_init)).type(dtype)
        self.ctx = nn.Parameter(embedding[0, 1 : 1 + n_ctx, :])
        classnames = [name.replace("_", " ") for name in classnames]
        tokenized_prompts = torch.cat([clip.tokenize(ctx_init + " " + n + ".") for n in classnames])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])
        clip_model_temp = load_clip_to_cpu(cfg, True).float()
        self.ZS_image_encoder = clip_model_temp.visual
        all_teacher_features = []
        with torch.no_grad():
            for single_template in IMAGENET_TEMPLATES:
                x = [single_template.replace("{}", name) for name in classnames]
                x_tokenized = torch.cat([clip.tokenize(p) for p in x])
                text_features = clip_model_temp.encode_text(x_tokenized)
                all_teacher_features.append(text_features.unsqueeze(1))
        self.fixed_embeddings = torch.cat(all_teacher_features, dim=1).mean(dim=1)
        self.n_cls = len(classnames)
        self.tokenized_prompts = tokenized_prompts

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class CustomCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        self.prompt_learner = VLPromptLearner(cfg, classnames, clip_model)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.clip_model = clip_model
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def encode_text(self, prompts):
        x = prompts + self.clip_model.positional_embedding.type(self.dtype)
        x = self.clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.clip_model.ln_final(x).type(self.dtype)
        eot = self.tokenized_prompts.argmax(dim=-1)
        return x[torch.arange(x.shape[0]), eot] @ self.clip_model.text_projection

    def forward(self, image, label=None):
        logit_scale = self.logit_scale.exp()
        text_features = self.encode_text(self.prompt_learner())
        image_features = self.image_encoder(image.type(self.dtype))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = logit_scale * image_features @ text_features.t()
        if self.prompt_learner.training:
            fixed = self.prompt_learner.fixed_embeddings.to(image.device)
            fixed = fixed / fixed.norm(dim=-1, keepdim=True)
            with torch.no_grad():
                zs = self.prompt_learner.ZS_image_encoder(image.type(self.dtype))
                zs = zs / zs.norm(dim=-1, keepdim=True)
                zero_shot_logits = logit_scale * zs @ fixed.t()
            return (
                F.cross_entropy(logits, label),
                text_features,
                fixed,
                zs,
                image_features,
                zero_shot_logits,
                logits,
            )
        return logits


@TRAINER_REGISTRY.register()
class PromptSRC(TrainerX):
    def build_model(self):
        cfg = self.cfg
        clip_model = load_clip_to_cpu(cfg).float()
        self.model = CustomCLIP(cfg, self.dm.dataset.classnames, clip_model)
        for name, param in self.model.named_parameters():
            if "prompt_learner" not in name or "ZS_image_encoder" in name:
                param.requires_grad_("VPT" in name)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("VLPromptLearner", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = batch["img"].to(self.device), batch["label"].to(self.device)
        loss_ce, text, fixed, zs, img, zs_logits, logits = self.model(image, label)
        node = self.cfg.TRAINER.PROMPTSRC
        loss_scl_text = F.l1_loss(text, fixed, reduction="mean") * node.TEXT_LOSS_WEIGHT
        loss_scl_image = F.l1_loss(img, zs, reduction="mean") * node.IMAGE_LOSS_WEIGHT
        l_kl = (
            F.kl_div(
                F.log_softmax(logits / 1, dim=1),
                F.log_softmax(zs_logits / 1, dim=1),
                reduction="sum",
                log_target=True,
            )
            / logits.numel()
        )
        loss = loss_ce + loss_scl_text + loss_scl_image + l_kl
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}
