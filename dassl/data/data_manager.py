"""DataManager, DatasetWrapper and build_data_loader (upstream signatures, spec 4.4/4.5).

Additions behind the upstream surface: train loaders get an explicit ``torch.Generator``
seeded from ``cfg.SEED`` (reproducible order, checkpointable state) and a worker seeding
function; under torchrun the train loader uses ``DistributedSampler`` and evaluation loaders
a non-padding shard per rank.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import DistributedSampler

from dassl.utils.logger import get_logger
from dassl.utils.tools import read_image

from .datasets import build_dataset
from .samplers import ShardedEvalSampler, build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "loader_options", "seed_worker"]

logger = get_logger(__name__)

# Evaluation loaders never shuffle; they get a private generator only so that iterating them
# does not consume the global torch RNG (DataLoader draws a base seed on every iteration).
_EVAL_SEED = 0


def seed_worker(worker_id: int) -> None:
    """Seed python/numpy in a loader worker from the per-worker torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (>= 0) or from entropy (< 0)."""
    g = torch.Generator()
    if seed is not None and seed >= 0:
        g.manual_seed(int(seed))
    else:
        g.seed()
    return g


def loader_options(cfg: Any) -> dict[str, Any]:
    """DataLoader speed options from ``cfg.DATALOADER`` (workers, pinning, persistence, prefetch).

    Pinning applies only when batches go to CUDA; persistence and prefetch only with workers.
    Configs built without our keys get the defaults of ``dassl/config/defaults.py``.
    """
    dl = cfg.DATALOADER
    workers = int(dl.NUM_WORKERS)
    if workers < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS must be >= 0, got {workers}")
    opts: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": bool(dl.get("PIN_MEMORY", True))
        and bool(cfg.USE_CUDA)
        and torch.cuda.is_available(),
    }
    if workers > 0:
        prefetch = int(dl.get("PREFETCH_FACTOR", 2))
        if prefetch < 1:
            raise ValueError(f"DATALOADER.PREFETCH_FACTOR must be >= 1, got {prefetch}")
        opts["persistent_workers"] = bool(dl.get("PERSISTENT_WORKERS", False))
        opts["prefetch_factor"] = prefetch
    return opts


def build_data_loader(
    cfg: Any,
    sampler_type: str = "SequentialSampler",
    data_source: Sequence[Any] | None = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: Any = None,
    is_train: bool = True,
    dataset_wrapper: Any = None,
    *,
    generator: torch.Generator | None = None,
    distributed: bool | None = None,
) -> torch.utils.data.DataLoader:
    """Build a DataLoader over ``data_source`` (upstream semantics, plus seeding and DDP).

    ``generator`` drives the sampler and worker seeds; ``distributed`` (default: whether a
    process group with more than one rank is active) shards the data over ranks.
    """
    if data_source is None or len(data_source) == 0:
        raise ValueError(
            f"Cannot build a {'training' if is_train else 'evaluation'} loader from an empty "
            "data source; check the dataset split files and DATASET.NUM_SHOTS"
        )
    if dataset_wrapper is None:
        dataset_wrapper = DatasetWrapper
    dataset = dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train)

    # imported here: dassl.engine imports dassl.data at module level
    from dassl.engine import distributed as dist_utils

    if distributed is None:
        distributed = dist_utils.get_world_size() > 1
    if distributed:
        world, rank = dist_utils.get_world_size(), dist_utils.get_rank()
        if is_train:
            if sampler_type not in ("RandomSampler", "SequentialSampler"):
                raise ValueError(
                    f'Sampler "{sampler_type}" is not supported in distributed training; use '
                    "RandomSampler or SequentialSampler"
                )
            seed = int(cfg.SEED) if cfg.SEED >= 0 else 0
            sampler = DistributedSampler(
                data_source,
                num_replicas=world,
                rank=rank,
                shuffle=sampler_type == "RandomSampler",
                seed=seed,
            )
        else:
            sampler = ShardedEvalSampler(data_source, num_replicas=world, rank=rank)
    else:
        sampler = build_sampler(
            sampler_type,
            cfg=cfg,
            data_source=data_source,
            batch_size=batch_size,
            n_domain=n_domain,
            n_ins=n_ins,
            generator=generator,
        )

    if generator is None:
        generator = make_generator(_EVAL_SEED if not is_train else cfg.SEED)

    n_sampled = len(sampler)
    data_loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=is_train and n_sampled >= batch_size,
        worker_init_fn=seed_worker,
        generator=generator,
        **loader_options(cfg),
    )
    if is_train and len(data_loader) == 0:
        raise ValueError(
            f"The training loader has no batch: {len(data_source)} items with batch size "
            f"{batch_size}; lower DATALOADER.TRAIN_X.BATCH_SIZE"
        )
    return data_loader


class DataManager:
    """Builds the dataset, its transforms and the train/val/test loaders from ``cfg``."""

    def __init__(
        self,
        cfg: Any,
        custom_tfm_train: Any = None,
        custom_tfm_test: Any = None,
        dataset_wrapper: Any = None,
    ):
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            logger.info("* Using custom transform for training")
            tfm_train = custom_tfm_train

        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            logger.info("* Using custom transform for testing")
            tfm_test = custom_tfm_test
        # Kept so trainers building extra loaders reuse them (no second build or log).
        self.tfm_train, self.tfm_test = tfm_train, tfm_test

        # One generator per training loader; its state goes into checkpoints (exact resume).
        self.train_generator = make_generator(cfg.SEED)
        dl = cfg.DATALOADER

        train_loader_x = build_data_loader(
            cfg,
            sampler_type=dl.TRAIN_X.SAMPLER,
            data_source=dataset.train_x,
            batch_size=dl.TRAIN_X.BATCH_SIZE,
            n_domain=dl.TRAIN_X.N_DOMAIN,
            n_ins=dl.TRAIN_X.N_INS,
            tfm=tfm_train,
            is_train=True,
            dataset_wrapper=dataset_wrapper,
            generator=self.train_generator,
        )

        train_loader_u = None
        self.train_generator_u = None
        if dataset.train_u:
            src = dl.TRAIN_X if dl.TRAIN_U.SAME_AS_X else dl.TRAIN_U
            seed_u = cfg.SEED + 1 if cfg.SEED >= 0 else -1
            self.train_generator_u = make_generator(seed_u)
            train_loader_u = build_data_loader(
                cfg,
                sampler_type=src.SAMPLER,
                data_source=dataset.train_u,
                batch_size=src.BATCH_SIZE,
                n_domain=src.N_DOMAIN,
                n_ins=src.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
                generator=self.train_generator_u,
            )

        val_loader = None
        if dataset.val:
            val_loader = build_data_loader(
                cfg,
                sampler_type=dl.TEST.SAMPLER,
                data_source=dataset.val,
                batch_size=dl.TEST.BATCH_SIZE,
                tfm=tfm_test,
                is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        test_loader = build_data_loader(
            cfg,
            sampler_type=dl.TEST.SAMPLER,
            data_source=dataset.test,
            batch_size=dl.TEST.BATCH_SIZE,
            tfm=tfm_test,
            is_train=False,
            dataset_wrapper=dataset_wrapper,
        )

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg: Any) -> None:
        """Print the upstream summary table (tabulate "simple" style)."""
        table: list[list[Any]] = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        logger.info(tabulate(table))


class DatasetWrapper(TorchDataset):
    """Reads an image per Datum and applies the transform(s); returns the upstream dict."""

    def __init__(
        self, cfg: Any, data_source: Sequence[Any], transform: Any = None, is_train: bool = False
    ):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform  # a transform, or a list/tuple of them (img, img2, ...)
        self.is_train = is_train
        # Augmenting an image K > 1 times is only allowed during training
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"Cannot augment the image {self.k_tfm} times (DATALOADER.K_TRANSFORMS) "
                "because transform is None"
            )

        # The un-augmented view (img0): exact resize, to tensor, normalise if configured.
        interp_mode = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        to_tensor = [T.Resize(list(cfg.INPUT.SIZE), interpolation=interp_mode), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        output: dict[str, Any] = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = read_image(item.impath)

        if self.transform is not None:
            if isinstance(self.transform, (list, tuple)):
                for i, tfm in enumerate(self.transform):
                    keyname = "img" if i == 0 else f"img{i + 1}"
                    output[keyname] = self._transform_image(tfm, img0)
            else:
                output["img"] = self._transform_image(self.transform, img0)
        else:
            output["img"] = img0

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm: Any, img0: Any) -> Any:
        img_list = [tfm(img0) for _ in range(self.k_tfm)]
        return img_list[0] if len(img_list) == 1 else img_list
