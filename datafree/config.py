"""Defaults of every ``DATAFREE.*`` key (documented in docs/DATAFREE.md)."""

from __future__ import annotations

from yacs.config import CfgNode as CN

from dassl.config import get_cfg_default

__all__ = ["add_datafree_config", "get_datafree_cfg", "STYLE_WORDS"]

# Mix-Prompt's default vocabulary of styles (the domains of PACS/DomainNet/ImageNet-R and more).
STYLE_WORDS = (
    "photo",
    "sketch",
    "painting",
    "cartoon",
    "clipart",
    "sculpture",
    "infograph",
    "embroidery",
    "origami",
    "graffiti",
    "tattoo",
    "toy",
    "pixel",
    "watercolor",
)


def add_datafree_config(cfg: CN) -> CN:
    """Add the ``DATAFREE`` node (teacher, strategies, generator, optimisation, augmentation)."""
    df = CN()
    df.TEACHER = "toy-teacher"  # CLIP name or checkpoint path (text tower + frozen image tower)
    df.TEACHER_RUN = ""  # PromptKD teacher run dir/checkpoint: its vision prompts + class vectors
    df.CLASS_VECTORS = ""  # "" = <TEACHER_RUN>/class_vectors.safetensors, or plain prompts
    df.CLASSNAMES_FILE = ""  # optional class list (one per line); checked against the dataset
    df.STRATEGY = "none"  # none | mix | random | contrastive
    df.N_PER_CLASS = 4
    df.BATCH_SIZE = 36
    df.SEED = 1
    df.TEMPLATE = "a {style} style photo of a {classname}."
    df.PLAIN_TEMPLATE = "a photo of a {classname}."
    df.STYLE_TOKENS = 1  # vectors in the [S] slot

    df.MIX = CN()
    df.MIX.WORDS = STYLE_WORDS
    df.MIX.NUM_WORDS = 3  # words mixed per image
    df.MIX.ALPHA = 1.0  # Dirichlet concentration: small = nearly pure styles

    df.RANDOM = CN()
    df.RANDOM.SCALE = 1.0  # [S] = mu + SCALE * sigma * eps

    df.CONTRASTIVE = CN()
    df.CONTRASTIVE.NUM_STYLES = 16  # K
    df.CONTRASTIVE.TAU = 0.1
    df.CONTRASTIVE.STEPS = 200
    df.CONTRASTIVE.LR = 0.01
    df.CONTRASTIVE.CONTENT_WEIGHT = 1.0
    df.CONTRASTIVE.CLASSES_PER_STEP = 16  # classes sampled for the content term per step
    df.CONTRASTIVE.DIVERSITY_ON = "style"  # style | class | both: features pushed apart
    df.CONTRASTIVE.STYLE_TEMPLATE = "a {style} style of a picture."
    df.CONTRASTIVE.STYLES_FILE = ""  # "" = <output>/styles.safetensors

    df.GENERATOR = CN()
    df.GENERATOR.NAME = "fourier"  # fourier | vqgan
    df.GENERATOR.SIZE = 0  # 0 = the teacher's input resolution (fourier)
    df.GENERATOR.FOURIER = CN()
    df.GENERATOR.FOURIER.DECAY = 1.0
    df.GENERATOR.FOURIER.INIT_STD = 0.01
    df.GENERATOR.VQGAN = CN()
    df.GENERATOR.VQGAN.CONFIG = ""
    df.GENERATOR.VQGAN.CHECKPOINT = ""

    df.OPTIM = CN()
    df.OPTIM.STEPS = 60
    df.OPTIM.LR = 0.05

    df.LOSS = CN()
    df.LOSS.MATCH = "spherical"  # spherical | cosine
    df.LOSS.TV_WEIGHT = 0.05
    df.LOSS.RANGE_WEIGHT = 1.0
    df.LOSS.CE_WEIGHT = 0.0  # class-consistency cross-entropy against the class vectors

    df.AUG = CN()
    df.AUG.CUTOUTS = 4
    df.AUG.SCALE = (0.6, 1.0)  # random resized crop area range
    df.AUG.FLIP = True
    df.AUG.DEGREES = 10.0
    df.AUG.TRANSLATE = 0.1
    df.AUG.NOISE_STD = 0.02
    cfg.DATAFREE = df
    return cfg


def get_datafree_cfg() -> CN:
    """Dassl defaults (for ``DATASET.*``) plus the ``DATAFREE`` node."""
    return add_datafree_config(get_cfg_default())
