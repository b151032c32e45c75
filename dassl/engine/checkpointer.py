"""Save / resume / load the registered models in the upstream checkpoint layout.

Layout (spec 2.6): ``<dir>/<name>/model.pth.tar-<N>``, ``model-best.pth.tar`` and the
``checkpoint`` pointer. Keys: ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``,
``val_result`` plus ours: ``rng_state`` (python, numpy, torch CPU/CUDA, loader generators),
``precision`` (grad scaler) and ``best_result``, so that resuming continues *exactly* where the
run stopped (spec P5 fixed: best_result restored, pointer never names model-best).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dassl.utils.logger import get_logger
from dassl.utils.torchtools import BEST_NAME, POINTER_FILE, load_checkpoint, save_checkpoint

__all__ = [
    "capture_rng_state",
    "restore_rng_state",
    "save_models",
    "resume_models",
    "load_models",
    "find_resume_file",
    "unwrap",
]

logger = get_logger(__name__)

_PERIODIC = re.compile(r"^model\.pth\.tar-(\d+)$")


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def capture_rng_state(generators: Mapping[str, torch.Generator | None]) -> dict[str, Any]:
    """Every RNG a training step can consume, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in generators.items() if g is not None},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def restore_rng_state(
    state: Mapping[str, Any] | None, generators: Mapping[str, torch.Generator | None]
) -> None:
    """Inverse of :func:`capture_rng_state` (missing parts are left untouched)."""
    if not state:
        return
    if "python" in state:
        random.setstate(_to_tuple(state["python"]))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state(
            (
                s["name"],
                s["keys"].numpy().astype(np.uint32),
                s["pos"],
                s["has_gauss"],
                s["cached_gaussian"],
            )
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    for key, gen_state in state.get("generators", {}).items():
        gen = generators.get(key)
        if gen is not None:
            gen.set_state(gen_state)


def save_models(
    models: Mapping[str, nn.Module],
    optims: Mapping[str, Any],
    scheds: Mapping[str, Any],
    epoch: int,
    directory: str,
    *,
    is_best: bool = False,
    val_result: float | None = None,
    model_name: str = "",
    extra: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write one checkpoint per registered model; ``epoch`` is 0-based (file says epoch+1)."""
    paths = []
    for name, model in models.items():
        optim = optims.get(name)
        sched = scheds.get(name)
        state = {
            "state_dict": unwrap(model).state_dict(),
            "epoch": epoch + 1,
            "optimizer": optim.state_dict() if optim is not None else None,
            "scheduler": sched.state_dict() if sched is not None else None,
            "val_result": val_result,
        }
        if extra:
            state.update(extra)
        paths.append(
            save_checkpoint(
                state, os.path.join(directory, name), is_best=is_best, model_name=model_name
            )
        )
    return paths


def find_resume_file(model_dir: str) -> str | None:
    """The file to resume from in ``model_dir``: the pointer's, else the newest periodic save.

    A missing pointer (e.g. a run killed between two writes by an older tool) is tolerated
    with a message; ``model-best.pth.tar`` is never used for resuming.
    """
    pointer = os.path.join(model_dir, POINTER_FILE)
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            name = f.readline().strip()
        if name and name != BEST_NAME and os.path.isfile(os.path.join(model_dir, name)):
            return os.path.join(model_dir, name)
        logger.warning(
            'Pointer file "%s" names "%s", which is not a usable checkpoint; looking for the '
            "newest model.pth.tar-<N> instead",
            pointer,
            name,
        )
    epochs = []
    if os.path.isdir(model_dir):
        for fname in os.listdir(model_dir):
            m = _PERIODIC.match(fname)
            if m:
                epochs.append(int(m.group(1)))
    if not epochs:
        return None
    fpath = os.path.join(model_dir, f"model.pth.tar-{max(epochs)}")
    if not os.path.isfile(pointer):
        logger.warning(
            'No pointer file "%s"; resuming from the newest periodic checkpoint "%s"',
            pointer,
            fpath,
        )
    return fpath


def resume_models(
    directory: str,
    models: Mapping[str, nn.Module],
    optims: Mapping[str, Any],
    scheds: Mapping[str, Any],
) -> tuple[int, dict[str, Any] | None]:
    """Restore every registered model from ``directory``.

    Returns ``(start_epoch, extra)`` where ``extra`` holds ``rng_state``, ``precision`` and
    ``best_result`` of the first model's file (None for files without them); start_epoch 0
    means "no checkpoint, train from scratch".
    """
    files = {}
    for name in models:
        fpath = find_resume_file(os.path.join(directory, name))
        if fpath is None:
            logger.info("No checkpoint found, train from scratch")
            return 0, None
        files[name] = fpath

    logger.info(f"Found checkpoint at {directory} (will resume training)")
    start_epoch = 0
    extra: dict[str, Any] | None = None
    for name, fpath in files.items():
        logger.info(f'Loading checkpoint from "{fpath}"')
        checkpoint = load_checkpoint(fpath)
        unwrap(models[name]).load_state_dict(checkpoint["state_dict"])
        logger.info("Loaded model weights")
        optim, sched = optims.get(name), scheds.get(name)
        if optim is not None and checkpoint.get("optimizer") is not None:
            optim.load_state_dict(checkpoint["optimizer"])
            logger.info("Loaded optimizer")
        if sched is not None and checkpoint.get("scheduler") is not None:
            sched.load_state_dict(checkpoint["scheduler"])
            logger.info("Loaded scheduler")
        start_epoch = checkpoint["epoch"]
        logger.info(f"Previous epoch: {start_epoch}")
        if extra is None:
            extra = {k: checkpoint.get(k) for k in ("rng_state", "precision", "best_result")}
    return start_epoch, extra


def load_models(
    directory: str,
    models: Mapping[str, nn.Module],
    epoch: int | None = None,
    keep_own: tuple[str, ...] = (),
) -> int | None:
    """Strictly load ``model-best.pth.tar`` (or ``model.pth.tar-<epoch>``) into each model.

    Entries whose last name is in ``keep_own`` (class-name buffers) keep the model's values.
    Returns the epoch stored in the (last) checkpoint.
    """
    ckpt_epoch = None
    model_file = BEST_NAME if epoch is None else f"model.pth.tar-{epoch}"
    for name, model in models.items():
        model_path = os.path.join(directory, name, model_file)
        if not os.path.exists(model_path):
            raise FileNotFoundError(
                f'Model not found at "{model_path}" (check --model-dir and --load-epoch)'
            )
        checkpoint = load_checkpoint(model_path, legacy="auto")
        state_dict = checkpoint["state_dict"]
        ckpt_epoch = checkpoint.get("epoch")
        # P4: val_result may be None or absent (older files call it "result")
        val_result = checkpoint.get("val_result", checkpoint.get("result"))
        val_str = "None" if val_result is None else f"{val_result:.1f}"
        logger.info(f"Load {model_path} to {name} (epoch={ckpt_epoch}, val_result={val_str})")
        target = unwrap(model)
        if keep_own:

            def kept(key: str) -> bool:
                return key.rsplit(".", 1)[-1] in keep_own

            state_dict = {k: v for k, v in state_dict.items() if not kept(k)}
            state_dict.update({k: v for k, v in target.state_dict().items() if kept(k)})
        target.load_state_dict(state_dict)
    return ckpt_epoch
