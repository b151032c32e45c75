"""Teacher-output cache: student epochs without a teacher forward.

PromptKD's student and teacher see the same randomly augmented image, so teacher outputs cannot
be cached per *image* (promptkd_facts.md, defect 15). They can be cached per *view*: one pass
draws K seeded views of every training image (:class:`~dassl.data.transforms.view_replay.ViewPipeline`:
crop box + flip), runs the frozen teacher image tower on them and stores the results next to
the view parameters. Student epochs then replay exactly those views
(:class:`ReplayDatasetWrapper` picks one of the K per image and step), so the loss equals the
online loss for the same view while no teacher runs.

What is stored: the teacher's L2-normalised **image features** (``D`` numbers per view, float32
by default, float16 on request), not logits. Features are ``C``-independent (ImageNet: 768 vs
1000 numbers per view) and the logits ``logit_scale * f @ V^T`` are recomputed per batch at a
negligible ``B x D x C`` cost, with the very same operations as the online path, so a float32
cache trains bit-identically to online distillation on the same views (tested on CPU). Size:
``N x K x D x bytes`` + ``N x K x 5 x 4`` bytes of view parameters; ImageNet (1.28 M images,
K = 10, ViT-L/14 D = 768) is 39.6 GB in float32, 19.9 GB in float16. It is printed before a
build starts and the build refuses to start when the disk lacks the space.

Layout of the cache directory (numpy ``.npy`` files, memory-mapped when read)::

    teacher_cache.json          what the cache was built for (CacheSpec) + logit_scale
    features-00000.npy          [n, K, D] teacher features of items 0..n-1 (shard 0)
    views-00000.npy             [n, K, 5] int32 view parameters (top, left, height, width, flip)
    ...

A shard is complete once its ``features-*.npy`` exists: both files are written as ``*.partial``
and renamed at the end (views first), so a killed build resumes at the first incomplete shard.
Under ``torchrun`` rank ``r`` builds the shards ``s`` with ``s % world == r``. The cache is
refused (:class:`TeacherCacheMismatch`) when it was built for another dataset item list,
teacher checkpoint, class-vector file, transform, seed, K, feature size or dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dassl.data.data_manager import DatasetWrapper
from dassl.data.transforms.view_replay import VIEW_FIELDS, ViewPipeline
from dassl.utils.errors import InvalidInputError
from dassl.utils.logger import get_logger
from dassl.utils.tools import atomic_write, read_image

__all__ = [
    "FORMAT_VERSION",
    "META_FILE",
    "CACHE_DTYPES",
    "CacheSpec",
    "TeacherCache",
    "TeacherCacheMismatch",
    "TeacherCacheIncomplete",
    "ReplayDatasetWrapper",
    "items_sha256",
    "estimate_bytes",
    "format_bytes",
    "prepare_cache_dir",
    "missing_shards",
    "build_shards",
]

logger = get_logger(__name__)

FORMAT_VERSION = 1
META_FILE = "teacher_cache.json"
CACHE_DTYPES = {"float32": np.float32, "float16": np.float16}
_VIEW_BYTES = len(VIEW_FIELDS) * 4


class TeacherCacheMismatch(InvalidInputError):
    """The cache directory holds outputs built for another dataset/teacher/transform."""


class TeacherCacheIncomplete(RuntimeError):
    """Shards of the cache are missing (the build was interrupted or not run)."""


@dataclass(frozen=True)
class CacheSpec:
    """Everything a cache's contents depend on; two runs may share a cache iff specs are equal."""

    dataset: str
    num_items: int
    items_sha256: str
    teacher_sha256: str
    class_vectors_sha256: str
    transform: str
    views: int
    seed: int
    dim: int
    dtype: str = "float32"
    shard_items: int = 4096

    def __post_init__(self) -> None:
        if self.dtype not in CACHE_DTYPES:
            raise InvalidInputError(
                f"TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE must be one of {list(CACHE_DTYPES)}, "
                f"got {self.dtype!r}"
            )
        if self.views < 1:
            raise InvalidInputError(
                f"TRAINER.PROMPTKD.TEACHER_CACHE_VIEWS must be >= 1, got {self.views}"
            )
        if self.num_items < 1 or self.shard_items < 1:
            raise ValueError("a teacher cache needs at least one item and shard_items >= 1")

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.shard_items)

    def shard_range(self, shard: int) -> range:
        start = shard * self.shard_items
        return range(start, min(start + self.shard_items, self.num_items))


def items_sha256(impaths: Sequence[str]) -> str:
    """Fingerprint of the ordered training item list (cache rows are indexed by position)."""
    h = hashlib.sha256()
    for path in impaths:
        h.update(os.fspath(path).encode("utf-8") + b"\n")
    return h.hexdigest()


def estimate_bytes(num_items: int, views: int, dim: int, dtype: str = "float32") -> int:
    """Bytes on disk of a cache: features plus view parameters."""
    item = np.dtype(CACHE_DTYPES[dtype]).itemsize
    return int(num_items) * int(views) * (int(dim) * item + _VIEW_BYTES)


def format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000.0
    raise AssertionError("unreachable")


def _features_file(directory: str, shard: int) -> str:
    return os.path.join(directory, f"features-{shard:05d}.npy")


def _views_file(directory: str, shard: int) -> str:
    return os.path.join(directory, f"views-{shard:05d}.npy")


def _read_meta(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, META_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise TeacherCacheMismatch(
            f"{path} is not a readable teacher-cache description ({err}); delete the directory "
            "or set TRAINER.PROMPTKD.TEACHER_CACHE to another one"
        ) from err
    return meta


def _check_meta(directory: str, meta: dict[str, Any], spec: CacheSpec) -> None:
    path = os.path.join(directory, META_FILE)
    if meta.get("format_version") != FORMAT_VERSION:
        raise TeacherCacheMismatch(
            f"{path} has format version {meta.get('format_version')!r}, expected "
            f"{FORMAT_VERSION}; delete the directory to rebuild the cache"
        )
    stored = meta.get("spec", {})
    wanted = asdict(spec)
    diffs = [
        _difference(f.name, stored.get(f.name), wanted[f.name])
        for f in fields(CacheSpec)
        if stored.get(f.name) != wanted[f.name]
    ]
    if diffs:
        raise TeacherCacheMismatch(
            f"Teacher cache {directory} was built for another setting ({'; '.join(diffs)}). "
            "A cache of another dataset, teacher, class-vector file or transform cannot be "
            "replayed: set TRAINER.PROMPTKD.TEACHER_CACHE to a new directory (or delete this one)"
        )


def _difference(name: str, cached: Any, run: Any) -> str:
    """``name: cache X vs run Y``; for JSON fingerprints only the differing entries."""
    try:
        a, b = json.loads(cached), json.loads(run)
    except (TypeError, ValueError):
        a = b = None
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return "; ".join(f"{name}: {k} cache {a.get(k)} vs run {b.get(k)}" for k in keys)
    return f"{name}: cache {_short(cached)} vs run {_short(run)}"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def prepare_cache_dir(directory: str, spec: CacheSpec, logit_scale: float) -> list[int]:
    """Create/validate the cache directory; returns the shards still to build.

    Every rank may call this: the description is written atomically with identical content.
    """
    os.makedirs(directory, exist_ok=True)
    meta = _read_meta(directory)
    if meta is None:
        meta = {"format_version": FORMAT_VERSION, "spec": asdict(spec), "logit_scale": logit_scale}
        with atomic_write(os.path.join(directory, META_FILE)) as f:
            json.dump(meta, f, indent=2, sort_keys=True)
    else:
        _check_meta(directory, meta, spec)
    return missing_shards(directory, spec)


def missing_shards(directory: str, spec: CacheSpec) -> list[int]:
    """Shards whose features file is absent (a shard's features file is written last)."""
    return [s for s in range(spec.num_shards) if not os.path.isfile(_features_file(directory, s))]


class TeacherCache:
    """Read side of a complete cache: memory-mapped shards, opened lazily in each process."""

    def __init__(self, directory: str, spec: CacheSpec, logit_scale: float):
        self.directory = directory
        self.spec = spec
        self.logit_scale = float(logit_scale)
        self._features: dict[int, np.ndarray] = {}
        self._views: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, directory: str, spec: CacheSpec) -> TeacherCache:
        """Open and validate ``directory`` against ``spec``; every shard must be present."""
        meta = _read_meta(directory)
        if meta is None:
            raise TeacherCacheIncomplete(
                f"No teacher cache in {directory} ({META_FILE} missing); it is built by a "
                "training run with TRAINER.PROMPTKD.TEACHER_WEIGHTS set"
            )
        _check_meta(directory, meta, spec)
        missing = missing_shards(directory, spec)
        if missing:
            raise TeacherCacheIncomplete(
                f"Teacher cache {directory} lacks {len(missing)} of {spec.num_shards} shards "
                f"(first: {missing[:5]}); run training again to resume the build"
            )
        return cls(directory, spec, float(meta["logit_scale"]))

    def __getstate__(self) -> dict[str, Any]:
        # loader workers re-open the memmaps instead of receiving copies of them
        state = dict(self.__dict__)
        state["_features"], state["_views"] = {}, {}
        return state

    def _shard(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.spec.num_items:
            raise IndexError(f"item {index} is outside the cache's {self.spec.num_items} items")
        return divmod(int(index), self.spec.shard_items)

    def _load(self, table: dict[int, np.ndarray], path: str, shard: int) -> np.ndarray:
        arr = table.get(shard)
        if arr is None:
            arr = table[shard] = np.load(path, mmap_mode="r", allow_pickle=False)
        return arr

    def views(self, index: int) -> np.ndarray:
        """``[K, 5]`` stored view parameters of item ``index``."""
        shard, row = self._shard(index)
        return self._load(self._views, _views_file(self.directory, shard), shard)[row]

    def features(self, index: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Float32 teacher features ``[B, D]`` of (item, view) pairs."""
        rows = []
        for i, k in zip(index.tolist(), view.tolist(), strict=True):
            shard, row = self._shard(i)
            feats = self._load(self._features, _features_file(self.directory, shard), shard)
            rows.append(np.asarray(feats[row, int(k)], dtype=np.float32))
        return torch.from_numpy(np.stack(rows))


class ReplayDatasetWrapper(DatasetWrapper):
    """Training items rendered as one of their K cached views (drawn from the torch RNG).

    Batches carry ``index`` and ``view`` so a trainer can look the teacher's output up.
    Build it through ``build_data_loader(..., dataset_wrapper=functools.partial(
    ReplayDatasetWrapper, pipeline=..., cache=...))``.
    """

    def __init__(
        self,
        cfg: Any,
        data_source: Sequence[Any],
        transform: Any = None,
        is_train: bool = True,
        *,
        pipeline: ViewPipeline,
        cache: TeacherCache,
    ):
        super().__init__(cfg, data_source, transform=None, is_train=is_train)
        if len(data_source) != cache.spec.num_items:
            raise TeacherCacheMismatch(
                f"the replayed data source has {len(data_source)} items, the cache "
                f"{cache.directory} {cache.spec.num_items}"
            )
        self.pipeline = pipeline
        self.cache = cache

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        view = int(torch.randint(self.cache.spec.views, (1,)))
        img = self.pipeline.apply(read_image(item.impath), self.cache.views(idx)[view])
        return {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
            "view": view,
            "img": img,
        }


class _AllViews(Dataset):
    """Item ``i`` of a shard as ``(index, [K,3,H,W] views, [K,5] params)`` for the build pass."""

    def __init__(
        self, items: Sequence[Any], indices: range, pipeline: ViewPipeline, spec: CacheSpec
    ):
        self.items, self.indices, self.pipeline, self.spec = items, indices, pipeline, spec

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        index = self.indices[i]
        img = read_image(self.items[index].impath)
        params = self.pipeline.sample_views(
            img.size[0], img.size[1], self.spec.seed, index, self.spec.views
        )
        views = torch.stack([self.pipeline.apply(img, p) for p in params])
        return index, views, torch.from_numpy(params)


def build_shards(
    directory: str,
    spec: CacheSpec,
    items: Sequence[Any],
    pipeline: ViewPipeline,
    teacher_features: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> list[int]:
    """Build this rank's missing shards; returns the shards built.

    ``teacher_features(images)`` returns float32 features ``[n, D]``; it is called on
    flattened views in chunks of ``batch_size`` images (use the training batch size: CPU
    kernels may round differently for other batch sizes).
    """
    if len(items) != spec.num_items:
        raise ValueError(f"{len(items)} items given, the cache spec says {spec.num_items}")
    todo = [s for s in missing_shards(directory, spec) if s % world_size == rank]
    total = estimate_bytes(spec.num_items, spec.views, spec.dim, spec.dtype)
    mine = sum(len(spec.shard_range(s)) for s in todo)
    need = estimate_bytes(mine, spec.views, spec.dim, spec.dtype)
    logger.info(
        f"Teacher cache {directory}: {spec.num_items:,} images x {spec.views} views x {spec.dim}-d "
        f"{spec.dtype} = {format_bytes(total)} in {spec.num_shards} shards; rank {rank} builds "
        f"{len(todo)} shards ({format_bytes(need)})"
    )
    free = shutil.disk_usage(directory).free
    if need > free:
        raise OSError(
            f"Teacher cache {directory} needs {format_bytes(need)} more, the disk has "
            f"{format_bytes(free)} free; free space, lower TRAINER.PROMPTKD.TEACHER_CACHE_VIEWS "
            "or use TEACHER_CACHE_DTYPE float16"
        )
    np_dtype = CACHE_DTYPES[spec.dtype]
    for shard in todo:
        rows = spec.shard_range(shard)
        feats_path, views_path = _features_file(directory, shard), _views_file(directory, shard)
        feats = np.lib.format.open_memmap(
            feats_path + ".partial", "w+", np_dtype, (len(rows), spec.views, spec.dim)
        )
        views = np.lib.format.open_memmap(
            views_path + ".partial", "w+", np.int32, (len(rows), spec.views, len(VIEW_FIELDS))
        )
        loader = DataLoader(
            _AllViews(items, rows, pipeline, spec),
            batch_size=max(1, batch_size // spec.views),
            num_workers=num_workers,
        )
        pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for index, imgs, params in loader:
            local = index - rows.start
            views[local.numpy()] = params.numpy()
            k = torch.arange(spec.views).repeat(len(local))
            pending.append((local.repeat_interleave(spec.views), k, imgs.flatten(0, 1)))
            pending = _run_teacher(feats, pending, teacher_features, batch_size, spec.dim, device)
        _run_teacher(feats, pending, teacher_features, batch_size, spec.dim, device, final=True)
        feats.flush()
        views.flush()
        del feats, views
        os.replace(views_path + ".partial", views_path)
        os.replace(feats_path + ".partial", feats_path)
        logger.info(f"Teacher cache shard {shard + 1}/{spec.num_shards} written")
    return todo


def _run_teacher(
    feats: np.ndarray,
    pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    teacher_features: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    dim: int,
    device: torch.device | str,
    final: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Run the teacher on full ``batch_size`` chunks of pending (item, view, image) rows.

    Returns the rows left over (fewer than ``batch_size``; none when ``final``).
    """
    if not pending:
        return []
    idx, view, imgs = (torch.cat(parts) for parts in zip(*pending, strict=True))
    n = len(idx) if final else (len(idx) // batch_size) * batch_size
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out = teacher_features(imgs[start:stop].to(device)).float().cpu().numpy()
        if out.shape != (stop - start, dim):
            raise ValueError(
                f"the teacher returned features of shape {out.shape}, the cache expects "
                f"[{stop - start}, {dim}]"
            )
        feats[idx[start:stop].numpy(), view[start:stop].numpy()] = out.astype(feats.dtype)
    return [(idx[n:], view[n:], imgs[n:])] if n < len(idx) else []
