"""Index samplers for the data loaders (upstream names) plus the two distributed ones.

Randomness comes from an optional ``torch.Generator`` so that a loader's order is reproducible
from ``cfg.SEED`` and its state can be checkpointed for exact resume.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DistributedSampler, Sampler
from torch.utils.data import RandomSampler as _TorchRandomSampler
from torch.utils.data import SequentialSampler as _TorchSequentialSampler

__all__ = [
    "AVAI_SAMPLERS",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
    "ShardedEvalSampler",
    "DistributedSampler",
    "build_sampler",
]

AVAI_SAMPLERS = [
    "RandomSampler",
    "SequentialSampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
]


class _Rng:
    """``random``-like helpers drawing from a torch Generator (None = global torch RNG)."""

    def __init__(self, generator: torch.Generator | None):
        self.g = generator

    def shuffle(self, items: list) -> list:
        perm = torch.randperm(len(items), generator=self.g).tolist()
        return [items[i] for i in perm]

    def sample(self, items: Sequence, k: int) -> list:
        perm = torch.randperm(len(items), generator=self.g)[:k].tolist()
        return [items[i] for i in perm]

    def choices(self, items: Sequence, k: int) -> list:
        idx = torch.randint(len(items), (k,), generator=self.g).tolist()
        return [items[i] for i in idx]


class RandomDomainSampler(Sampler):
    """Each batch holds ``batch_size / n_domain`` images from each of ``n_domain`` random domains.

    Sampling without replacement per domain; an epoch ends once a selected domain has fewer
    than ``batch_size / n_domain`` images left. ``n_domain <= 0`` uses every domain.
    """

    def __init__(
        self,
        data_source: Sequence[Any],
        batch_size: int,
        n_domain: int,
        generator: torch.Generator | None = None,
    ):
        self.data_source = data_source
        self.domain_dict: defaultdict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(data_source):
            self.domain_dict[item.domain].append(i)
        self.domains = list(self.domain_dict.keys())
        if n_domain is None or n_domain <= 0:
            n_domain = len(self.domains)
        if batch_size % n_domain != 0:
            raise ValueError(
                f"RandomDomainSampler: batch size {batch_size} must be divisible by "
                f"N_DOMAIN={n_domain}"
            )
        self.n_img_per_domain = batch_size // n_domain
        self.batch_size = batch_size
        self.n_domain = n_domain
        self.generator = generator
        self.length = self._count()

    def _count(self) -> int:
        # the epoch length does not depend on the random draws, only on the sizes
        sizes = {d: len(v) for d, v in self.domain_dict.items()}
        if self.n_domain < len(self.domains):
            return len(list(self._indices(_Rng(torch.Generator().manual_seed(0)))))
        n = min(sizes.values()) // self.n_img_per_domain if sizes else 0
        return n * self.batch_size

    def _indices(self, rng: _Rng) -> list[int]:
        domain_dict = copy.deepcopy(self.domain_dict)
        final_idxs: list[int] = []
        stop = not domain_dict
        while not stop:
            for domain in rng.sample(self.domains, self.n_domain):
                idxs = domain_dict[domain]
                if len(idxs) < self.n_img_per_domain:
                    stop = True
                    break
                selected = rng.sample(idxs, self.n_img_per_domain)
                final_idxs.extend(selected)
                chosen = set(selected)
                domain_dict[domain] = [i for i in idxs if i not in chosen]
                if len(domain_dict[domain]) < self.n_img_per_domain:
                    stop = True
        return final_idxs

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices(_Rng(self.generator)))

    def __len__(self) -> int:
        return self.length


class SeqDomainSampler(Sampler):
    """Each batch holds an equal share of every domain, domains in sorted order."""

    def __init__(
        self,
        data_source: Sequence[Any],
        batch_size: int,
        generator: torch.Generator | None = None,
    ):
        self.data_source = data_source
        self.domain_dict: defaultdict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(data_source):
            self.domain_dict[item.domain].append(i)
        self.domains = sorted(self.domain_dict.keys())
        n_domain = len(self.domains)
        if n_domain == 0 or batch_size % n_domain != 0:
            raise ValueError(
                f"SeqDomainSampler: batch size {batch_size} must be divisible by the number of "
                f"domains ({n_domain})"
            )
        self.n_img_per_domain = batch_size // n_domain
        self.batch_size = batch_size
        self.n_domain = n_domain
        self.generator = generator
        n = min(len(v) for v in self.domain_dict.values()) // self.n_img_per_domain
        self.length = n * batch_size

    def __iter__(self) -> Iterator[int]:
        rng = _Rng(self.generator)
        pools = {d: rng.shuffle(self.domain_dict[d]) for d in self.domains}
        final_idxs: list[int] = []
        n_batches = self.length // self.batch_size
        for b in range(n_batches):
            for d in self.domains:
                start = b * self.n_img_per_domain
                final_idxs.extend(pools[d][start : start + self.n_img_per_domain])
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


class RandomClassSampler(Sampler):
    """Each batch = ``batch_size // n_ins`` random classes x ``n_ins`` instances.

    Classes with fewer than ``n_ins`` items are oversampled with replacement (re-id style).
    """

    def __init__(
        self,
        data_source: Sequence[Any],
        batch_size: int,
        n_ins: int,
        generator: torch.Generator | None = None,
    ):
        if batch_size < n_ins:
            raise ValueError(
                f"RandomClassSampler: batch size {batch_size} must be >= N_INS ({n_ins})"
            )
        self.data_source = data_source
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.generator = generator
        self.index_dic: defaultdict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(data_source):
            self.index_dic[item.label].append(index)
        self.labels = list(self.index_dic.keys())
        if len(self.labels) < self.ncls_per_batch:
            raise ValueError(
                f"RandomClassSampler needs at least {self.ncls_per_batch} classes per batch, "
                f"the data has {len(self.labels)}"
            )
        self.length = 0
        for label in self.labels:
            num = max(len(self.index_dic[label]), n_ins)
            self.length += num - num % n_ins

    def __iter__(self) -> Iterator[int]:
        rng = _Rng(self.generator)
        batch_idxs_dict: dict[int, list[list[int]]] = defaultdict(list)
        for label in self.labels:
            idxs = list(self.index_dic[label])
            if len(idxs) < self.n_ins:
                idxs = rng.choices(idxs, self.n_ins)
            idxs = rng.shuffle(idxs)
            for start in range(0, len(idxs) - self.n_ins + 1, self.n_ins):
                batch_idxs_dict[label].append(idxs[start : start + self.n_ins])

        avai_labels = list(self.labels)
        final_idxs: list[int] = []
        while len(avai_labels) >= self.ncls_per_batch:
            for label in rng.sample(avai_labels, self.ncls_per_batch):
                final_idxs.extend(batch_idxs_dict[label].pop(0))
                if not batch_idxs_dict[label]:
                    avai_labels.remove(label)
        return iter(final_idxs)

    def __len__(self) -> int:
        return self.length


class ShardedEvalSampler(Sampler):
    """Rank ``r`` of ``w`` gets indices ``r, r + w, r + 2w, ...``: no padding, no duplicates.

    Unlike ``DistributedSampler`` nothing is repeated to even out the shards, so the evaluator
    results gathered over ranks have exactly the totals of a one-process run.
    """

    def __init__(self, data_source: Sequence[Any], num_replicas: int, rank: int):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.data_source = data_source
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.data_source), self.num_replicas))

    def __len__(self) -> int:
        n = len(self.data_source)
        return max(0, math.ceil((n - self.rank) / self.num_replicas))


def build_sampler(
    sampler_type: str,
    cfg: Any = None,
    data_source: Sequence[Any] | None = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
    generator: torch.Generator | None = None,
) -> Sampler:
    """Build an upstream sampler by name; unknown names raise ValueError listing the choices."""
    if sampler_type == "RandomSampler":
        return _TorchRandomSampler(data_source, generator=generator)
    if sampler_type == "SequentialSampler":
        return _TorchSequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain, generator=generator)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size, generator=generator)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins, generator=generator)
    raise ValueError(f'Unknown sampler type "{sampler_type}"; choose from {AVAI_SAMPLERS}')
