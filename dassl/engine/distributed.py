"""torchrun / DistributedDataParallel helpers; everything degrades to one process.

``train.py`` calls :func:`init_distributed` when ``WORLD_SIZE > 1`` (set by torchrun); the
engine asks :func:`get_rank`/:func:`get_world_size`/:func:`is_main_process` and never touches
``torch.distributed`` directly.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
import yaml

from dassl.utils.errors import UserInputError

__all__ = [
    "ConfigMismatchError",
    "check_same_config",
    "config_differences",
    "init_distributed",
    "is_distributed",
    "get_rank",
    "get_local_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "all_gather_object",
    "all_reduce_mean_",
    "cleanup",
]


def env_world_size() -> int:
    """World size announced by the launcher (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(backend: str | None = None, timeout_s: int = 1800) -> bool:
    """Initialise the default process group from torchrun's environment.

    Returns True when a process group is (now) active. Uses nccl on CUDA, gloo otherwise, and
    pins the CUDA device to ``LOCAL_RANK``.
    """
    if is_distributed():
        return True
    if env_world_size() <= 1:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE > 1 but {missing} are not set; launch with torchrun "
            "(e.g. torchrun --nproc_per_node 2 train.py ...)"
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed() and get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Gather a picklable object from every rank (a one-element list when not distributed)."""
    if not is_distributed() or get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over ranks in place (no-op when not distributed)."""
    if is_distributed() and get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(get_world_size())
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send ``obj`` from rank ``src`` to every rank (identity when not distributed)."""
    if not is_distributed() or get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ConfigMismatchError(UserInputError):
    """Ranks of one distributed run were started with different configs."""


def config_differences(dumps: list[str]) -> list[str]:
    """Lines (``KEY: rank0 value vs rank r value``) where rank dumps differ from rank 0's."""

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (node or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    ref = flat(yaml.safe_load(dumps[0]))
    diffs = []
    for rank, dump in enumerate(dumps[1:], start=1):
        other = flat(yaml.safe_load(dump))
        for key in sorted(set(ref) | set(other)):
            if ref.get(key) != other.get(key):
                diffs.append(f"{key}: rank 0 {ref.get(key)!r} vs rank {rank} {other.get(key)!r}")
    return diffs


def check_same_config(dump: str) -> None:
    """Refuse to run when the ranks' merged configs differ (e.g. different opts per node)."""
    if not is_distributed() or get_world_size() == 1:
        return
    dumps = all_gather_object(dump)
    diffs = config_differences(dumps)
    if diffs:
        raise ConfigMismatchError(
            "the ranks of this distributed run disagree on the config: "
            + "; ".join(diffs[:5])
            + ("; ..." if len(diffs) > 5 else "")
            + ". Start every rank with the same config files and command-line opts"
        )


def cleanup() -> None:
    """Destroy the process group if one is active."""
    if is_distributed():
        dist.destroy_process_group()
