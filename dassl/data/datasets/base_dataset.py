"""Datum and DatasetBase: the record and container every dataset file builds.

This module path (``dassl.data.datasets.base_dataset``) and Datum's private attribute names are
baked into upstream few-shot pickles (``split_fewshot/shot_K-seed_S.pkl``), so neither may move.
"""

from __future__ import annotations

import os
import random
import tarfile
import zipfile
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any

from dassl.utils.errors import InputFileNotFoundError
from dassl.utils.logger import get_logger
from dassl.utils.tools import download_url

__all__ = ["Datum", "DatasetBase"]

logger = get_logger(__name__)

# Listings of recently seen *large* directories. Datasets create Datums folder by folder, so an
# LRU of a few directories turns one stat per image into one scandir per folder (ImageNet: 1.28M
# stats become ~1k listings) while keeping upstream's "the file must exist" guarantee. Small
# directories are not worth caching and are always checked with a real stat, so a file deleted
# after its (small) folder was listed is reported missing.
_DIR_CACHE: OrderedDict[str, frozenset[str]] = OrderedDict()
_DIR_CACHE_SIZE = 32
_MIN_CACHED_ENTRIES = 256
_SMALL_DIRS: OrderedDict[str, None] = OrderedDict()  # known-small directories (LRU)


def _listing(dirname: str) -> frozenset[str] | None:
    """The cached listing of a large directory, else None (small or unreadable)."""
    names = _DIR_CACHE.get(dirname)
    if names is not None:
        _DIR_CACHE.move_to_end(dirname)
        return names
    if dirname in _SMALL_DIRS:
        return None
    try:
        with os.scandir(dirname or ".") as it:
            names = frozenset(e.name for e in it)
    except OSError:
        return None
    if len(names) < _MIN_CACHED_ENTRIES:
        _SMALL_DIRS[dirname] = None
        if len(_SMALL_DIRS) > 4096:
            _SMALL_DIRS.popitem(last=False)
        return None
    _DIR_CACHE[dirname] = names
    if len(_DIR_CACHE) > _DIR_CACHE_SIZE:
        _DIR_CACHE.popitem(last=False)
    return names


def _file_exists(path: str) -> bool:
    """Fast existence check: cached listing of a large parent first, a real stat otherwise."""
    dirname, base = os.path.split(path)
    names = _listing(dirname)
    if names is not None and base in names:
        return True
    # A miss may be a file created after the listing was cached: ask the filesystem.
    if os.path.isfile(path):
        _DIR_CACHE.pop(dirname, None)
        return True
    return False


class Datum:
    """One labelled image: path, class label, domain label and class name.

    The attributes are private and read-only (``_impath``, ``_label``, ``_domain``,
    ``_classname``); there is no ``__slots__`` and no custom pickling so that upstream pickles
    restore into this class unchanged.
    """

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = ""):
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}: {impath!r}")
        if not _file_exists(impath):
            raise InputFileNotFoundError(
                f'Image file not found: "{impath}". Check DATASET.ROOT and that the dataset '
                "was extracted in the layout its dataset file expects."
            )
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
            f"classname={self._classname!r})"
        )


class DatasetBase:
    """Holds the four splits and the class metadata derived from ``train_x``.

    ``train_x``: labelled training data; ``train_u``: unlabelled training data (optional);
    ``val``: validation data (optional); ``test``: test data.
    """

    dataset_dir = ""  # directory name of the dataset under DATASET.ROOT
    domains: list[str] = []  # domain names (domain adaptation / generalisation datasets)

    def __init__(
        self,
        train_x: list[Datum] | None = None,
        train_u: list[Datum] | None = None,
        val: list[Datum] | None = None,
        test: list[Datum] | None = None,
    ):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        # Upstream semantics (kept for result parity): everything comes from train_x only;
        # num_classes is max(label) + 1 while classnames has one entry per distinct label.
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> list[Datum] | None:
        return self._train_x

    @property
    def train_u(self) -> list[Datum] | None:
        return self._train_u

    @property
    def val(self) -> list[Datum] | None:
        return self._val

    @property
    def test(self) -> list[Datum] | None:
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum] | None) -> int:
        """Number of classes as ``max(label) + 1`` (0 for an empty source)."""
        if not data_source:
            return 0
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum] | None) -> tuple[dict[int, str], list[str]]:
        """Return the label -> classname mapping and the classnames ordered by label."""
        container = set()
        for item in data_source or []:
            container.add((item.label, item.classname))
        mapping = {label: classname for label, classname in container}
        labels = sorted(mapping.keys())
        classnames = [mapping[label] for label in labels]
        return mapping, classnames

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]):
        """Validate source/target domain names against ``self.domains``."""
        if len(source_domains) == 0:
            raise ValueError("DATASET.SOURCE_DOMAINS is empty; this dataset needs source domains")
        if len(target_domains) == 0:
            raise ValueError("DATASET.TARGET_DOMAINS is empty; this dataset needs target domains")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Download an archive to ``dst`` and extract it next to it (gdown only for Drive)."""
        if not os.path.exists(os.path.dirname(dst)):
            os.makedirs(os.path.dirname(dst))
        if from_gdrive:
            try:
                import gdown
            except ImportError as e:
                raise ImportError(
                    "Downloading from Google Drive needs the optional package gdown "
                    "(pip install gdown), or download the file manually to " + dst
                ) from e
            gdown.download(url, dst, quiet=False)
        else:
            download_url(url, dst)

        logger.info("Extracting file ...")
        extract_to = os.path.dirname(dst)
        if dst.endswith(".zip"):
            with zipfile.ZipFile(dst, "r") as zf:
                zf.extractall(extract_to)
        elif dst.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(dst) as tf:
                tf.extractall(extract_to, filter="data")
        else:
            raise NotImplementedError(f"Cannot extract {dst}: only .zip, .tar, .tar.gz supported")
        logger.info("File extracted to %s", extract_to)

    def generate_fewshot_dataset(
        self, *data_sources: list[Datum], num_shots: int = -1, repeat: bool = False
    ) -> Any:
        """Sample ``num_shots`` items per label from each source (upstream ``random`` semantics).

        Uses the global ``random`` module exactly as upstream (one ``random.sample`` per label in
        first-appearance order) so that seeded runs reproduce upstream few-shot subsets.
        Returns one list for one source, else a list of lists; ``num_shots < 1`` returns the
        sources untouched.
        """
        if num_shots < 1:
            if len(data_sources) == 1:
                return data_sources[0]
            return data_sources

        logger.info(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            tracker = self.split_dataset_by_label(data_source)
            dataset = []
            for _label, items in tracker.items():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)

        if len(output) == 1:
            return output[0]
        return output

    def split_dataset_by_label(self, data_source: Sequence[Datum]) -> defaultdict[int, list]:
        """Group items by label (insertion order = first appearance)."""
        output: defaultdict[int, list] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source: Sequence[Datum]) -> defaultdict[int, list]:
        """Group items by domain label (insertion order = first appearance)."""
        output: defaultdict[int, list] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
