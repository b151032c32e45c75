"""Save / resume / load the registered models in the upstream checkpoint layout.

Layout (spec 2.6): ``<dir>/<name>/model.pth.tar-<N>``, ``model-best.pth.tar`` and the
``checkpoint`` pointer. Keys: ``state_dict``, ``epoch``, ``optimizer``, ``scheduler``,
``val_result`` plus ours: ``rng_state`` (python, numpy, torch CPU/CUDA, loader generators),
``precision`` (grad scaler) and ``best_result``, so that resuming continues *exactly* where the
run stopped (spec P5 fixed: best_result restored, pointer never names model-best).

Mid-epoch checkpoints (``TRAIN.CHECKPOINT_ITER_FREQ`` > 0) go to one rolling file,
``model-iter.pth.tar``, whose ``epoch`` is the number of *completed* epochs and ``iteration`` the
batches done in the next one; it also holds the loader generators' state at that epoch's start,
so a resume replays the same batch order. Trainer state such as PromptSRC's Gaussian prompt
aggregation lives in the same file (``trainer_state``), never in a side file.

One rule finds "the checkpoint in a run directory" (:func:`find_checkpoint`); resuming, eval-only
loading, the teacher resolver and the student's class-vector provenance all call it.
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

from dassl.utils.errors import InputFileNotFoundError, UserInputError
from dassl.utils.logger import get_logger
from dassl.utils.torchtools import BEST_NAME, POINTER_FILE, load_checkpoint, save_checkpoint

__all__ = [
    "capture_rng_state",
    "restore_rng_state",
    "save_models",
    "resume_models",
    "load_models",
    "find_resume_file",
    "find_checkpoint",
    "checkpoint_epoch",
    "run_dir_of",
    "CheckpointMismatchError",
    "ITER_NAME",
    "unwrap",
]

logger = get_logger(__name__)

_PERIODIC = re.compile(r"^model\.pth\.tar-(\d+)$")
ITER_NAME = "model-iter.pth.tar"  # the rolling mid-epoch checkpoint


class CheckpointMismatchError(RuntimeError, UserInputError):
    """A checkpoint's weights do not fit the model built from the config."""


def run_dir_of(path: str, model_name: str) -> str:
    """The run directory of ``path`` (a run dir, its ``<model_name>`` dir, or a file in it).

    Side files of a run (e.g. the teacher's class vectors) sit in this directory.
    """
    path = os.path.normpath(os.path.abspath(path))
    if os.path.isfile(path):
        path = os.path.dirname(path)
    if os.path.basename(path) == model_name:
        path = os.path.dirname(path)
    return path


def _periodic_epochs(model_dir: str) -> list[int]:
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(m.group(1)) for f in os.listdir(model_dir) if (m := _PERIODIC.match(f)))


def find_checkpoint(
    path: str, model_name: str = "", epoch: int | None = None, purpose: str = "final"
) -> str | None:
    """THE rule for "the checkpoint in a run directory" (one function, used everywhere).

    ``path`` is a checkpoint file (returned as is) or a run directory; the model's files are in
    ``<path>/<model_name>`` when that directory exists, else in ``path`` itself. Then:

    - ``epoch`` given: ``model.pth.tar-<epoch>``; missing -> :class:`InputFileNotFoundError`
      listing the epochs that exist (``--load-epoch``).
    - ``purpose="resume"``: the file the ``checkpoint`` pointer names (the latest save, epoch or
      mid-epoch; never ``model-best``), else the newest ``model.pth.tar-<N>``, else None.
    - ``purpose="final"`` (the weights a finished run deployed: eval-only, teacher weights,
      class-vector provenance): ``model-best.pth.tar`` when the run wrote one
      (``TEST.FINAL_MODEL best_val``), else the resume rule; nothing -> InputFileNotFoundError.
    """
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        if purpose == "resume" and epoch is None:
            return None  # a new run
        raise InputFileNotFoundError(
            f'No checkpoint file or run directory at "{path}": check the path you gave'
        )
    model_dir = os.path.join(path, model_name) if model_name else path
    if not os.path.isdir(model_dir):
        model_dir = path
    if epoch is not None:
        fpath = os.path.join(model_dir, f"model.pth.tar-{epoch}")
        if not os.path.isfile(fpath):
            have = _periodic_epochs(model_dir)
            raise InputFileNotFoundError(
                f'Model not found at "{fpath}": epoch {epoch} was not saved (epochs saved in '
                f"{model_dir}: {have or 'none'}); pass one of them as --load-epoch, or check "
                "--model-dir"
            )
        return fpath
    if purpose == "final":
        best = os.path.join(model_dir, BEST_NAME)
        if os.path.isfile(best):
            return best
    found = find_resume_file(model_dir)
    if found is None and purpose == "final":
        raise InputFileNotFoundError(
            f'No checkpoint in "{model_dir}" (expected {BEST_NAME}, the "{POINTER_FILE}" pointer '
            "or model.pth.tar-<N>): check --model-dir / the run directory you gave"
        )
    return found


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
    iteration: int = 0,
) -> list[str]:
    """Write one checkpoint per registered model; ``epoch`` is 0-based (file says epoch+1).

    ``iteration`` > 0 writes the mid-epoch file :data:`ITER_NAME`: ``epoch`` completed epochs
    plus ``iteration`` batches of epoch ``epoch`` (0-based).
    """
    paths = []
    if iteration > 0:
        model_name = ITER_NAME
    for name, model in models.items():
        optim = optims.get(name)
        sched = scheds.get(name)
        state = {
            "state_dict": unwrap(model).state_dict(),
            "epoch": epoch if iteration > 0 else epoch + 1,
            "iteration": iteration,
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
    epochs = _periodic_epochs(model_dir)
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

    Returns ``(start_epoch, extra)`` where ``extra`` holds ``rng_state``, ``precision``,
    ``best_result``, ``iteration``, ``epoch_generator_state`` and ``trainer_state`` of the first
    model's file (None for files without them); start_epoch 0 and no extra means "no
    checkpoint, train from scratch".
    """
    files = {}
    for name in models:
        fpath = find_checkpoint(directory, name, purpose="resume")
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
        _load_state(models[name], checkpoint["state_dict"], fpath, "resume from")
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
            keys = ("rng_state", "precision", "best_result", "iteration")
            extra = {k: checkpoint.get(k) for k in keys}
            extra["epoch_generator_state"] = checkpoint.get("epoch_generator_state")
            extra["trainer_state"] = checkpoint.get("trainer_state")
            if extra["iteration"]:
                logger.info(f"Resuming mid-epoch: {extra['iteration']} batches already done")
    return start_epoch, extra


def _load_state(model: nn.Module, state_dict: Mapping[str, Any], fpath: str, what: str) -> None:
    """Strict load; a key/shape mismatch is the user's file not fitting the config."""
    try:
        unwrap(model).load_state_dict(state_dict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointMismatchError(
            f'Cannot {what} "{fpath}": its weights do not fit the model built from this config '
            f"({' '.join(line.strip() for line in first[:3])[:400]}). It was written by another "
            "run (other backbone, prompt depth/width, dataset or trainer): point --model-dir / "
            "--resume at a run made with the same config, or use a new --output-dir"
        ) from e
    logger.info("Loaded model weights")


def load_models(
    directory: str,
    models: Mapping[str, nn.Module],
    epoch: int | None = None,
    keep_own: tuple[str, ...] = (),
) -> int | None:
    """Strictly load each model's final weights (:func:`find_checkpoint`, or ``epoch``).

    Entries whose last name is in ``keep_own`` (class-name buffers) keep the model's values.
    Returns the checkpoint's ``epoch`` (completed epochs; None if the file has none) so the
    engine knows which epoch it evaluates.
    """
    ckpt_epoch = None
    for name, model in models.items():
        model_path = find_checkpoint(directory, name, epoch=epoch, purpose="final")
        checkpoint = load_checkpoint(model_path, legacy="auto")
        state_dict = checkpoint["state_dict"]
        ckpt_epoch = checkpoint.get("epoch")
        # P4: val_result may be None or absent (older files call it "result")
        val_result = checkpoint.get("val_result", checkpoint.get("result"))
        val_str = "None" if val_result is None else f"{val_result:.1f}"
        logger.info(f"Load {model_path} to {name} (epoch={ckpt_epoch}, val_result={val_str})")
        if keep_own:

            def kept(key: str) -> bool:
                return key.rsplit(".", 1)[-1] in keep_own

            state_dict = {k: v for k, v in state_dict.items() if not kept(k)}
            state_dict.update({k: v for k, v in unwrap(model).state_dict().items() if kept(k)})
        _load_state(model, state_dict, model_path, "load")
    return ckpt_epoch


def checkpoint_epoch(directory: str, model_name: str, epoch: int | None = None) -> int | None:
    """The ``epoch`` recorded in the file :func:`load_models` would load (None if absent)."""
    fpath = find_checkpoint(directory, model_name, epoch=epoch, purpose="final")
    value = load_checkpoint(fpath, legacy="auto").get("epoch")
    return int(value) if isinstance(value, int) else None
