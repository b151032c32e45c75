"""Upstream-style trainer and dataset files used by the engine / train.py tests.

Written the way CoOp's ``trainers/coop.py`` and ``datasets/*.py`` are (print, registry
decorators, ``load_model`` override dropping class-dependent buffers), so the tests exercise
the compatibility surface. This module holds no tests; importing it registers ``ToyCoOp`` and
``EngineToyData``.
"""

import os
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.nn import functional as F

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import listdir_nohidden, load_checkpoint

N_CLASSES = 4
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 50, 220), (230, 220, 40), (200, 40, 200)]


def make_image_folder(root, n_train=6, n_val=2, n_test=4, size=8, n_classes=N_CLASSES, seed=0):
    """Write ``root/engine_toy/<split>/<class>/<i>.png``: one noisy colour per class."""
    rng = np.random.default_rng(seed)
    base = osp.join(root, "engine_toy")
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for c in range(n_classes):
            d = osp.join(base, split, f"class_{c}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                pix = np.array(COLOURS[c], dtype=np.float64)[None, None, :]
                img = np.clip(pix + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(osp.join(d, f"{i}.png"))
    return base


@DATASET_REGISTRY.register()
class EngineToyData(DatasetBase):
    dataset_dir = "engine_toy"

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.dataset_dir)
        train = self.read_split("train")
        val = self.read_split("val")
        test = self.read_split("test")
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=num_shots)
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        super().__init__(train_x=train, val=val, test=test)

    def read_split(self, split):
        items = []
        split_dir = osp.join(self.dataset_dir, split)
        for label, cname in enumerate(listdir_nohidden(split_dir, sort=True)):
            for fname in listdir_nohidden(osp.join(split_dir, cname), sort=True):
                impath = osp.join(split_dir, cname, fname)
                items.append(Datum(impath=impath, label=label, classname=cname))
        return items


class PromptLearner(nn.Module):
    def __init__(self, n_cls, dim=16):
        super().__init__()
        self.ctx = nn.Parameter(torch.zeros(n_cls, dim))
        g = torch.Generator().manual_seed(7)
        # class-dependent buffer, like CoOp's token_prefix
        self.register_buffer("token_prefix", torch.randn(n_cls, dim, generator=g) * 0.1)

    def forward(self):
        return self.token_prefix + self.ctx


class ToyModel(nn.Module):
    """A frozen 'image encoder' (fixed weights, like pretrained CLIP) + a prompt learner."""

    def __init__(self, n_cls, in_dim=3 * 8 * 8, dim=16):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.image_encoder = nn.Linear(in_dim, dim)
        with torch.no_grad():
            self.image_encoder.weight.copy_(torch.randn(dim, in_dim, generator=g) * 0.05)
            self.image_encoder.bias.zero_()
        self.prompt_learner = PromptLearner(n_cls, dim)

    def forward(self, image):
        feats = self.image_encoder(image.flatten(1))
        return feats @ self.prompt_learner().t()


@TRAINER_REGISTRY.register()
class ToyCoOp(TrainerX):
    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        print("Building custom CLIP")
        self.model = ToyModel(len(classnames))
        for name, param in self.model.named_parameters():
            if "prompt_learner" not in name:
                param.requires_grad_(False)
        self.model.to(self.device)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)

        loss_summary = {
            "loss": loss.item(),
            "acc": compute_accuracy(output, label)[0].item(),
        }
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return loss_summary

    def parse_batch_train(self, batch):
        input = batch["img"]
        label = batch["label"]
        input = input.to(self.device)
        label = label.to(self.device)
        return input, label

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        names = self.get_model_names()
        model_file = "model-best.pth.tar"
        if epoch is not None:
            model_file = "model.pth.tar-" + str(epoch)
        for name in names:
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f'Model not found at "{model_path}"')
            checkpoint = load_checkpoint(model_path)
            state_dict = checkpoint["state_dict"]
            epoch = checkpoint["epoch"]
            if "token_prefix" in state_dict:
                del state_dict["token_prefix"]
            print(f'Loading weights to {name} from "{model_path}" (epoch = {epoch})')
            self._models[name].load_state_dict(state_dict, strict=False)


def write_trainer_yaml(path, max_epoch=2, batch_size=4, lr=0.5, extra=""):
    """A trainer YAML in the shape of CoOp's configs/trainers/*.yaml, for 8x8 images."""
    text = f"""DATALOADER:
  TRAIN_X:
    BATCH_SIZE: {batch_size}
  TEST:
    BATCH_SIZE: 4
  NUM_WORKERS: 0

INPUT:
  SIZE: (8, 8)
  INTERPOLATION: "bilinear"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_flip", "normalize"]

OPTIM:
  NAME: "sgd"
  LR: {lr}
  MAX_EPOCH: {max_epoch}
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 0.1

TRAIN:
  PRINT_FREQ: 2
{extra}"""
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def parse_log(path, end_signal="Finish training", keyword="accuracy"):
    """CoOp parse_test_res.py logic: last ``* <keyword>: X%`` after the end signal, or None."""
    import re

    regex = re.compile(rf"\* {keyword}: ([\.\deE+-]+)%")
    good_to_go = False
    value = None
    with open(path) as f:
        for line in f.readlines():
            line = line.strip()
            if line == end_signal:
                good_to_go = True
            match = regex.search(line)
            if match and good_to_go:
                value = float(match.group(1))
    return value
