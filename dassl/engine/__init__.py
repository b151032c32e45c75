"""Trainer registry and base classes (upstream import paths)."""

from .build import TRAINER_REGISTRY, build_trainer
from .trainer import SimpleNet, SimpleTrainer, TrainerBase, TrainerX, TrainerXU

__all__ = [
    "TRAINER_REGISTRY",
    "build_trainer",
    "SimpleNet",
    "SimpleTrainer",
    "TrainerBase",
    "TrainerX",
    "TrainerXU",
]
