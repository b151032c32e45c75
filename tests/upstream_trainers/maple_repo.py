# MaPLe code base style (trainers/maple.py, independentVL.py, vpt.py in one file here). Deviations
# from upstream: the MaPLe projection widths are read from the CLIP (upstream: 512 -> 768), and
# there is no load_model override (the engine's keeps the class-name buffers of the model).
import copy

import torch
import torch.nn as nn
from torch.nn import functional as F

from clip import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer


def load_clip_to_cpu(cfg, design_details):
    backbone_name = cfg.MODEL.BACKBONE.NAME
    url = clip._MODELS[backbone_name]
    model_path = clip._download(url)
    try:
        model = torch.jit.load(model_path, map_location="cpu").eval()
        state_dict = None
    except RuntimeError:
        state_dict = torch.load(model_path, map_location="cpu")
    model = clip.build_model(state_dict or model.state_dict(), design_details)
    return model


class TextEncoder(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts, tokenized_prompts, compound_prompts_deeper_text=None):
        x = prompts + self.positional_embedding.type(self.dtype)
        x = x.permute(1, 0, 2)
        if compound_prompts_deeper_text is None:
            x = self.transformer(x)
        else:
            x = self.transformer([x, compound_prompts_deeper_text, 0])[0]
        x = x.permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        x = x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection
        return x


class PromptLearner(nn.Module):
    def __init__(self, cfg, classnames, clip_model, n_ctx, ctx_init, depth=1):
        super().__init__()
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]
        if ctx_init and n_ctx <= 4:
            ctx_init = ctx_init.replace("_", " ")
            prompt = clip.tokenize(ctx_init)
            with torch.no_grad():
                embedding = clip_model.token_embedding(prompt).type(dtype)
            ctx_vectors = embedding[0, 1 : 1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}"')
        self.ctx = nn.Parameter(ctx_vectors)
        self.maple = cfg.TRAINER.NAME == "MaPLe"
        if self.maple:
            vis_width = clip_model.visual.conv1.weight.shape[0]
            self.proj = nn.Linear(ctx_dim, vis_width)
            self.compound_prompts_text = nn.ParameterList(
                [nn.Parameter(torch.empty(n_ctx, ctx_dim)) for _ in range(depth - 1)]
            )
            for single_para in self.compound_prompts_text:
                nn.init.normal_(single_para, std=0.02)
            single_layer = nn.Linear(ctx_dim, vis_width)
            self.compound_prompt_projections = nn.ModuleList(
                [copy.deepcopy(single_layer) for _ in range(depth - 1)]
            )
        classnames = [name.replace("_", " ") for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]
        tokenized_prompts = torch.cat([clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :1, :])
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])
        self.n_cls = len(classnames)
        self.tokenized_prompts = tokenized_prompts

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        if not self.maple:
            return prompts
        visual_deep_prompts = []
        for index, layer in enumerate(self.compound_prompt_projections):
            visual_deep_prompts.append(layer(self.compound_prompts_text[index]))
        return prompts, self.proj(self.ctx), self.compound_prompts_text, visual_deep_prompts


class CustomCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model, n_ctx, ctx_init, depth=1, vision_only=False):
        super().__init__()
        self.vision_only = vision_only
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        if vision_only:  # VPT: fixed hand-crafted prompts
            prompts = [f"a photo of a {c.replace('_', ' ')}." for c in classnames]
            with torch.no_grad():
                self.fixed_embeddings = clip_model.encode_text(clip.tokenize(prompts))
        else:
            self.prompt_learner = PromptLearner(cfg, classnames, clip_model, n_ctx, ctx_init, depth)
            self.tokenized_prompts = self.prompt_learner.tokenized_prompts

    def forward(self, image, label=None):
        logit_scale = self.logit_scale.exp()
        if self.vision_only:
            text_features = self.fixed_embeddings.to(image.device)
            image_features = self.image_encoder(image.type(self.dtype))
        elif self.prompt_learner.maple:
            prompts, shared_ctx, deep_text, deep_vision = self.prompt_learner()
            text_features = self.text_encoder(prompts, self.tokenized_prompts, deep_text)
            image_features = self.image_encoder(image.type(self.dtype), shared_ctx, deep_vision)
        else:
            text_features = self.text_encoder(self.prompt_learner(), self.tokenized_prompts)
            image_features = self.image_encoder(image.type(self.dtype))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = logit_scale * image_features @ text_features.t()
        if self.training:
            return F.cross_entropy(logits, label)
        return logits


class _Base(TrainerX):
    design = None

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip_to_cpu(cfg, self.design_details(cfg))
        if self.node(cfg).PREC == "fp32" or self.node(cfg).PREC == "amp":
            clip_model.float()
        print("Building custom CLIP")
        self.model = self.custom_clip(cfg, classnames, clip_model)
        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            if "prompt_learner" not in name:
                param.requires_grad_("VPT" in name)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.model_name, self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss = self.model(image, label)
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        loss_summary = {"loss": loss.item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return loss_summary

    def parse_batch_train(self, batch):
        input = batch["img"]
        label = batch["label"]
        return input.to(self.device), label.to(self.device)


@TRAINER_REGISTRY.register()
class MaPLe(_Base):
    model_name = "MultiModalPromptLearner"

    def node(self, cfg):
        return cfg.TRAINER.MAPLE

    def design_details(self, cfg):
        return {
            "trainer": "MaPLe",
            "vision_depth": 0,
            "language_depth": 0,
            "vision_ctx": 0,
            "language_ctx": 0,
            "maple_length": cfg.TRAINER.MAPLE.N_CTX,
        }

    def custom_clip(self, cfg, classnames, clip_model):
        node = cfg.TRAINER.MAPLE
        return CustomCLIP(cfg, classnames, clip_model, node.N_CTX, node.CTX_INIT, node.PROMPT_DEPTH)


@TRAINER_REGISTRY.register()
class IVLP(_Base):
    model_name = "VLPromptLearner"

    def node(self, cfg):
        return cfg.TRAINER.IVLP

    def design_details(self, cfg):
        node = cfg.TRAINER.IVLP
        return {
            "trainer": "IVLP",
            "vision_depth": node.PROMPT_DEPTH_VISION,
            "language_depth": node.PROMPT_DEPTH_TEXT,
            "vision_ctx": node.N_CTX_VISION,
            "language_ctx": node.N_CTX_TEXT,
        }

    def custom_clip(self, cfg, classnames, clip_model):
        node = cfg.TRAINER.IVLP
        return CustomCLIP(cfg, classnames, clip_model, node.N_CTX_TEXT, node.CTX_INIT)


@TRAINER_REGISTRY.register()
class VPT(_Base):
    model_name = "prompt_learner"

    def node(self, cfg):
        return cfg.TRAINER.VPT

    def design_details(self, cfg):
        node = cfg.TRAINER.VPT
        return {
            "trainer": "VPT",
            "vision_depth": node.PROMPT_DEPTH_VISION,
            "vision_ctx": node.N_CTX_VISION,
            "language_depth": 0,
            "language_ctx": 0,
        }

    def custom_clip(self, cfg, classnames, clip_model):
        return CustomCLIP(cfg, classnames, clip_model, 0, "", vision_only=True)
