"""Checkpoint files (upstream layout, atomic writes, safe loading) and small module helpers.

Loading policy: :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``. Files
written by upstream Dassl pickle the warm-up scheduler *object* (which holds a copy of the
optimizer), so torch refuses them; they raise :class:`LegacyCheckpointError`. Passing
``legacy=True`` (or ``legacy="auto"``: weights-only first, then legacy) reads them with
:class:`RestrictedUnpickler`, which rebuilds tensors and plain containers only and turns every
other pickled class or function into an inert :class:`LegacyObject` placeholder, so loading
never runs code from the file. A plain ``weights_only=False`` load is never used.
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import shutil
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from functools import partial
from typing import Any, Literal

import torch
import torch.nn as nn

from .errors import InputFileNotFoundError, UserInputError
from .logger import get_logger
from .tools import atomic_write, mkdir_if_missing

__all__ = [
    "CheckpointError",
    "LegacyCheckpointError",
    "UnsafeCheckpointError",
    "LegacyObject",
    "RestrictedUnpickler",
    "is_legacy_checkpoint_error",
    "save_checkpoint",
    "load_checkpoint",
    "resume_from_checkpoint",
    "load_pretrained_weights",
    "count_num_param",
    "open_all_layers",
    "open_specified_layers",
    "init_network_weights",
]

log = get_logger(__name__)

POINTER_FILE = "checkpoint"
BEST_NAME = "model-best.pth.tar"


class CheckpointError(RuntimeError, UserInputError):
    """A checkpoint file cannot be read (corrupt, truncated, or not a torch file)."""


class LegacyCheckpointError(CheckpointError):
    """A checkpoint pickles Python objects that ``weights_only=True`` refuses (upstream files)."""


def is_legacy_checkpoint_error(exc: BaseException) -> bool:
    """True if ``exc`` means "retry with ``load_checkpoint(path, legacy=True)``"."""
    return isinstance(exc, LegacyCheckpointError)


# ------------------------------------------------------------------------------------------
# Restricted unpickler for legacy (upstream Dassl) checkpoints


class LegacyObject:
    """Inert stand-in for any pickled object the restricted unpickler does not rebuild.

    Records what was pickled (``pickled_module``/``pickled_name`` on the class, constructor
    ``args``/``kwargs``, ``state`` from ``__setstate__``, appended ``items``) and never runs code.
    """

    pickled_module = ""
    pickled_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> LegacyObject:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: list[Any] = []
        self.mapping: dict[Any, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not hasattr(self, "args"):  # built by NEWOBJ without __init__
            self.args, self.kwargs, self.items, self.mapping = (), {}, [], {}
        self.state = state

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Iterable[Any]) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.mapping[key] = value

    def __repr__(self) -> str:
        return f"<LegacyObject {self.pickled_module}.{self.pickled_name}>"


_PLACEHOLDERS: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(
            f"Legacy_{name}",
            (LegacyObject,),
            {"pickled_module": module, "pickled_name": name, "__module__": __name__},
        )
    return _PLACEHOLDERS[key]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): builtins.set,
    ("builtins", "frozenset"): builtins.frozenset,
    ("builtins", "slice"): builtins.slice,
    ("builtins", "complex"): builtins.complex,
    ("builtins", "bytearray"): builtins.bytearray,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "Tensor"): torch.Tensor,
    ("torch._tensor", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
}
for _name in ("_rebuild_tensor_v3",):
    if hasattr(torch._utils, _name):
        _ALLOWED[("torch._utils", _name)] = getattr(torch._utils, _name)


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle calls a function that can run code (``os.system``, ``eval``...)."""


# Modules whose functions a weights file has no reason to reference: a pickle naming one of
# them is refused outright (loading never runs it anyway; the message says why it is refused).
_DANGEROUS_MODULES = (
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "code",
    "pickle", "marshal", "ctypes", "multiprocessing", "webbrowser", "pty", "commands",
    "io", "tempfile", "urllib", "requests", "http",
)  # fmt: skip
_DANGEROUS_BUILTINS = {
    "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals",
    "locals", "vars", "input", "breakpoint", "exit", "quit", "help", "memoryview",
}  # fmt: skip


def _is_dangerous(module: str, name: str) -> bool:
    root = module.split(".", 1)[0]
    if root in _DANGEROUS_MODULES:
        return True
    return root in ("builtins", "__builtin__") and name in _DANGEROUS_BUILTINS


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor-rebuild functions and plain containers.

    Storages are resolved by ``torch.load`` itself (its wrapper maps ``*Storage`` names before
    calling us and supplies ``persistent_load``). Any other global, e.g. an optimizer class,
    a scheduler, ``os.system``, becomes a :class:`LegacyObject` subclass, so calling it only
    records its arguments. ``torch.storage._load_from_bytes`` (a nested unrestricted
    ``torch.load``) is deliberately *not* allowed.
    """

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if _is_dangerous(module, name):
            raise UnsafeCheckpointError(
                f"refused: the file references {module}.{name}, which a weights file never "
                "needs; it would run code when unpickled by plain torch.load. Nothing was "
                "executed. Do not use this file; get the checkpoint from a trusted source"
            )
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _placeholder(module, name)


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


#: a module-like object for ``torch.load(pickle_module=...)``
restricted_pickle = types.ModuleType("dassl_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]
restricted_pickle.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]


def _load_legacy(fpath: str) -> Any:
    load = partial(
        torch.load,
        fpath,
        map_location="cpu",
        pickle_module=restricted_pickle,
        weights_only=False,
    )
    try:
        return load()
    except UnicodeDecodeError:
        # python-2 era pickles: decode byte strings as latin-1, as upstream does
        return load(encoding="latin1")


def _is_weights_only_refusal(exc: BaseException) -> bool:
    return isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc)


def load_checkpoint(fpath: str | None, legacy: bool | Literal["auto"] = "auto") -> Any:
    """Load a checkpoint onto the CPU.

    Args:
        fpath: file path.
        legacy: False -> ``torch.load(weights_only=True)`` only (raises
            :class:`LegacyCheckpointError` for upstream files that pickle objects);
            True -> restricted unpickler (see module docstring); "auto" -> weights-only first,
            restricted unpickler if that is refused.

    Raises:
        ValueError: ``fpath`` is None. FileNotFoundError: no such file.
        CheckpointError: the file is truncated/corrupt or not a torch checkpoint.
    """
    if fpath is None:
        raise ValueError("File path is None")
    fpath = os.fspath(fpath)
    if not os.path.exists(fpath):
        raise FileNotFoundError(f'No checkpoint file found at "{fpath}"')
    if legacy not in (False, True, "auto"):
        raise ValueError(f"legacy must be False, True or 'auto', got {legacy!r}")

    if legacy is not True:
        try:
            return torch.load(fpath, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not _is_weights_only_refusal(e):
                raise CheckpointError(f'Checkpoint "{fpath}" is corrupt or truncated: {e}') from e
            if legacy is False:
                raise LegacyCheckpointError(
                    f'Checkpoint "{fpath}" pickles Python objects (e.g. an upstream Dassl '
                    "scheduler/optimizer), which weights_only loading refuses. Load it with "
                    'dassl.utils.load_checkpoint(path, legacy=True) (or legacy="auto"): a '
                    "restricted unpickler that keeps tensors/containers and replaces other "
                    f"objects by inert placeholders. Original error: {str(e).splitlines()[0]}"
                ) from e
            log.warning(
                'Checkpoint "%s" pickles Python objects; reading it with the restricted '
                "legacy unpickler",
                fpath,
            )
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
            raise CheckpointError(f'Checkpoint "{fpath}" is corrupt or truncated: {e}') from e

    try:
        return _load_legacy(fpath)
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f'Checkpoint "{fpath}" {e}') from e
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
    ) as e:
        raise CheckpointError(
            f'Checkpoint "{fpath}" cannot be read by the legacy loader (corrupt, truncated or '
            f"not a torch checkpoint): {e}"
        ) from e


# ------------------------------------------------------------------------------------------
# Saving / resuming


def _strip_module_prefix(state_dict: dict[str, Any]) -> OrderedDict[str, Any]:
    out: OrderedDict[str, Any] = OrderedDict()
    for k, v in state_dict.items():
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


def save_checkpoint(
    state: dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
) -> str:
    """Write ``state`` to ``save_dir/<model_name or model.pth.tar-<epoch>>`` atomically.

    The ``checkpoint`` pointer (one line: the basename) is updated atomically too, except when
    the file is ``model-best.pth.tar``: the pointer always names the latest periodic/last save
    (spec P5). With ``is_best`` the file is also copied to ``model-best.pth.tar``.
    Returns the path written.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys and isinstance(state.get("state_dict"), dict):
        state = dict(state)
        state["state_dict"] = _strip_module_prefix(state["state_dict"])
    if not model_name:
        if "epoch" not in state:
            raise KeyError("save_checkpoint: state has no 'epoch' and no model_name was given")
        model_name = f"model.pth.tar-{state['epoch']}"
    fpath = os.path.join(save_dir, model_name)
    with atomic_write(fpath, "wb") as f:
        torch.save(state, f)
    log.info("Checkpoint saved to %s", fpath)

    basename = os.path.basename(fpath)
    if basename != BEST_NAME:
        with atomic_write(os.path.join(save_dir, POINTER_FILE), "w") as f:
            f.write(basename + "\n")

    if is_best:
        best_fpath = os.path.join(os.path.dirname(fpath), BEST_NAME)
        with atomic_write(best_fpath, "wb") as dst, open(fpath, "rb") as src:
            shutil.copyfileobj(src, dst)
        log.info('Best checkpoint saved to "%s"', best_fpath)
    return fpath


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> int:
    """Restore model/optimizer/scheduler from the latest checkpoint in ``fdir``.

    The file is found by :func:`dassl.engine.checkpointer.find_checkpoint` (the pointer's file,
    else the newest ``model.pth.tar-<N>``).

    Loads the model strictly; returns the stored ``epoch`` (number of completed epochs).
    """
    from dassl.engine.checkpointer import find_checkpoint  # the one run-dir rule

    fpath = find_checkpoint(fdir, purpose="resume")
    if fpath is None:
        raise InputFileNotFoundError(
            f'Cannot resume: no checkpoint in "{fdir}" (no "{POINTER_FILE}" pointer and no '
            "model.pth.tar-<N>). Remove the directory to train from scratch."
        )
    log.info('Loading checkpoint from "%s"', fpath)
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    log.info("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        log.info("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        log.info("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    log.info("Previous epoch: %s", start_epoch)
    return start_epoch


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the weights of ``weight_path`` whose names and shapes match ``model``.

    Keys with a leading ``module.`` are stripped; unmatched keys are reported, not fatal.
    Upstream files with pickled objects are read via the restricted legacy loader.
    """
    checkpoint = load_checkpoint(weight_path, legacy="auto")
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        state_dict = checkpoint["state_dict"]
    else:
        state_dict = checkpoint
    model_dict = model.state_dict()
    new_state_dict: OrderedDict[str, Any] = OrderedDict()
    matched, discarded = [], []
    for k, v in state_dict.items():
        if k.startswith("module."):
            k = k[7:]
        if k in model_dict and torch.is_tensor(v) and model_dict[k].size() == v.size():
            new_state_dict[k] = v
            matched.append(k)
        else:
            discarded.append(k)
    model_dict.update(new_state_dict)
    model.load_state_dict(model_dict)
    if not matched:
        log.warning(
            'Cannot load "%s" (check the key names manually): no key matches the model',
            weight_path,
        )
    else:
        log.info("Successfully loaded pretrained weights from %s", weight_path)
        if discarded:
            log.info("Layers discarded due to unmatched keys or size: %s", discarded)


# ------------------------------------------------------------------------------------------
# Module helpers


def count_num_param(
    model: nn.Module | None = None, params: Iterable[torch.Tensor] | None = None
) -> int:
    """Total number of elements of ``model``'s parameters (or of ``params``)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        total = 0
        for p in params:
            if isinstance(p, dict):
                total += sum(q.numel() for q in p["params"])
            else:
                total += p.numel()
        return total
    raise ValueError("count_num_param: give model or params")


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return model


def open_all_layers(model: nn.Module) -> None:
    """Put ``model`` in train mode with every parameter trainable."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def open_specified_layers(model: nn.Module, open_layers: str | list[str]) -> None:
    """Train only the named top-level children of ``model``; freeze and eval() the others."""
    model = _unwrap(model)
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    for layer in open_layers:
        if not hasattr(model, layer):
            raise ValueError(
                f'"{layer}" is not an attribute of the model, please provide a '
                f"valid name (children: {[n for n, _ in model.named_children()]})"
            )
    for name, module in model.named_children():
        is_open = name in open_layers
        module.train(is_open)
        for p in module.parameters():
            p.requires_grad = is_open


def init_network_weights(model: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialise conv/linear weights (normal|xavier|kaiming|orthogonal) and norm layers."""

    def _init(m: nn.Module) -> None:
        classname = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in classname or "Linear" in classname):
            if init_type == "normal":
                nn.init.normal_(m.weight.data, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight.data, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight.data, gain=gain)
            else:
                raise NotImplementedError(
                    f"initialization method {init_type} is not implemented "
                    "(choose normal, xavier, kaiming or orthogonal)"
                )
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif "BatchNorm" in classname:
            if getattr(m, "weight", None) is not None:
                nn.init.constant_(m.weight.data, 1.0)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif "InstanceNorm" in classname:
            if getattr(m, "weight", None) is not None and getattr(m, "bias", None) is not None:
                nn.init.constant_(m.weight.data, 1.0)
                nn.init.constant_(m.bias.data, 0.0)

    model.apply(_init)
