"""Shared machinery of the CoOp-format datasets: root lookup, split files, few-shot caches.

Every benchmark dataset of this package is a :class:`CoOpDataset`. Its ``__init__`` runs the
upstream flow (CoOp ``datasets/*.py``), once, here:

1. ``<root>/<dataset_dir>`` where root = ``DATASET.ROOT`` (``train.py --root``) or, when that is
   empty, the environment variable ``PROMPTKD_DATA``;
2. full train/val/test splits: read ``split_file`` (``split_zhou_<Name>.json``) when present,
   else :meth:`CoOpDataset.build_splits` from the original annotation files (upstream's random
   consumption) and save the json atomically so later runs are identical;
3. few-shot sampling when ``DATASET.NUM_SHOTS >= 1`` (train with K, then val with min(K, 4),
   global ``random``), cached in ``split_fewshot/shot_K-seed_S.pkl`` (upstream format);
4. ``all_classnames``, ``base_classes``, ``new_classes``, ``full_splits`` (full labels);
5. ``DATASET.SUBSAMPLE_CLASSES`` (``datasets.base_new``) and ``DatasetBase.__init__``.

Adding a dataset (e.g. ``datasets/toy_shapes.py``)::

    @DATASET_REGISTRY.register()
    class MyData(CoOpDataset):
        dataset_dir = "my_data"            # folder under the data root
        image_subdir = "images"            # -> self.image_dir (split paths are relative to it)
        split_file = "split_MyData.json"   # None: always build_splits() (like FGVCAircraft)
        annotation_files = ("images",)     # what build_splits() reads (for the error message)

        def build_splits(self):
            return read_and_split_data(self.image_dir)   # (train, val, test) lists of Datum

A dataset without a validation split returns ``val=None`` from :meth:`load_splits`; then only
train is few-shot sampled and ``val = test`` (ImageNet's upstream behaviour).

Missing image files: ``Datum`` checks existence when a split is built (cheaply: one directory
listing per folder), and an error names the image and the split file. Cached Datums
(few-shot pickles: every path checked; ImageNet's ``preprocessed.pkl``: one image per class
checked) are validated at load; a file removed later is reported by ``read_image`` at read time.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import InvalidInputError, UserInputError, listdir_nohidden, read_json, write_json
from dassl.utils.logger import get_logger
from dassl.utils.tools import atomic_write

from .base_new import base_new_ranges, subsample_classes

__all__ = [
    "DATA_ENV_VAR",
    "DOCS_PATH",
    "CoOpDataset",
    "DatasetLayoutError",
    "class_info",
    "docs_ref",
    "is_datum_list",
    "load_datum_pickle",
    "load_mat",
    "make_datum",
    "read_and_split_data",
    "read_split",
    "resolve_root",
    "save_datum_pickle",
    "save_split",
    "set_test_only_info",
    "split_trainval",
    "trusted_datum",
]

logger = get_logger(__name__)

#: environment variable used as the data root when ``DATASET.ROOT`` is empty
DATA_ENV_VAR = "PROMPTKD_DATA"
#: documentation of the expected layouts, relative to the repository root
DOCS_PATH = "docs/DATASETS.md"


class DatasetLayoutError(FileNotFoundError, UserInputError):
    """A dataset directory, split file, annotation file or image is missing or malformed."""


def docs_ref(anchor: str) -> str:
    """``docs/DATASETS.md#<anchor>`` for error messages."""
    return f"{DOCS_PATH}#{anchor}" if anchor else DOCS_PATH


def resolve_root(cfg: Any) -> str:
    """Absolute data root: ``cfg.DATASET.ROOT``, else ``$PROMPTKD_DATA``; error if neither."""
    root = str(cfg.DATASET.ROOT or "") or os.environ.get(DATA_ENV_VAR, "")
    if not root:
        raise DatasetLayoutError(
            "No dataset root given: pass --root DIR to train.py (DATASET.ROOT) or set the "
            f"environment variable {DATA_ENV_VAR}=DIR. See {DOCS_PATH}."
        )
    return os.path.abspath(os.path.expanduser(root))


# ---------------------------------------------------------------------------------------------
# Split files (upstream OxfordPets/DescribableTextures static helpers)
# ---------------------------------------------------------------------------------------------


def read_split(filepath: str, path_prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a ``split_zhou_*.json`` (``{"train"|"val"|"test": [[rel_path, label, cname], ...]}``).

    Paths are joined to ``path_prefix``. A missing image raises :class:`DatasetLayoutError`
    naming the image and the split file.
    """
    logger.info(f"Reading split from {filepath}")
    try:
        split = read_json(filepath)
    except ValueError as e:
        raise DatasetLayoutError(
            f"Split file {filepath} is not valid JSON ({e}); delete it to rebuild it from the "
            "annotation files, or download it again."
        ) from e
    if not isinstance(split, dict) or any(k not in split for k in ("train", "val", "test")):
        raise DatasetLayoutError(
            f'Split file {filepath} must be a JSON object with keys "train", "val", "test".'
        )

    def _convert(name: str) -> list[Datum]:
        rows = []
        for entry in split[name]:
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise DatasetLayoutError(
                    f"Split file {filepath}: entry {entry!r} of {name!r} is not "
                    "[relative_path, label, classname]."
                )
            rel, label, classname = entry
            rows.append((os.path.join(path_prefix, rel), int(label), str(classname)))
        # one fresh directory listing per folder instead of one stat per image
        missing = _missing_paths(p for p, _, _ in rows)
        if missing:
            raise DatasetLayoutError(
                f"Image {missing[0]} listed in the {name!r} split of {filepath} does not exist"
                f" ({len(missing)} of {len(rows)} images of that split are missing). Check the "
                f"data root and that the images are extracted under {path_prefix}."
            )
        return [trusted_datum(p, y, 0, c) for p, y, c in rows]

    return _convert("train"), _convert("val"), _convert("test")


def make_datum(impath: str, label: int, classname: str, source: str) -> Datum:
    """``Datum(...)``; a missing image raises :class:`DatasetLayoutError` naming ``source``."""
    try:
        return Datum(impath=impath, label=label, classname=classname)
    except FileNotFoundError as e:
        raise DatasetLayoutError(
            f"Image {impath} listed in {source} does not exist. Check the data root and that "
            "the images are extracted where the dataset's layout expects them."
        ) from e


def load_mat(path: str, key: str) -> Any:
    """Variable ``key`` of a MATLAB v5 file (scipy.io.loadmat), with errors naming the file."""
    try:
        from scipy.io import loadmat
    except ImportError as e:  # scipy is in requirements.txt; only needed to rebuild splits
        raise ImportError(
            f"Reading {path} needs scipy (pip install scipy); alternatively put the dataset's "
            f"split_zhou_*.json next to it (see {DOCS_PATH})."
        ) from e
    try:
        mat = loadmat(path)
    except Exception as e:
        raise DatasetLayoutError(f"Cannot read the MATLAB file {path}: {e}") from e
    if key not in mat:
        raise DatasetLayoutError(f"{path} has no variable {key!r} (found {sorted(mat)})")
    return mat[key]


def _relative(impath: str, prefix: str) -> str:
    # upstream: remove the prefix string, then one leading "/"
    if impath.startswith(prefix):
        impath = impath[len(prefix) :]
    else:
        impath = impath.replace(prefix, "")
    if impath.startswith(("/", os.sep)):
        impath = impath[1:]
    return impath


def save_split(
    train: Sequence[Datum],
    val: Sequence[Datum],
    test: Sequence[Datum],
    filepath: str,
    path_prefix: str,
) -> None:
    """Write the three splits as a ``split_zhou_*.json`` with paths relative to ``path_prefix``.

    The file is written atomically (a crash never leaves half a split behind).
    """

    def _extract(items: Sequence[Datum]) -> list[list[Any]]:
        return [[_relative(it.impath, path_prefix), it.label, it.classname] for it in items]

    split = {"train": _extract(train), "val": _extract(val), "test": _extract(test)}
    write_json(split, filepath)
    logger.info(f"Saved split to {filepath}")


def split_trainval(
    trainval: Sequence[Datum], p_val: float = 0.2
) -> tuple[list[Datum], list[Datum]]:
    """Split trainval per class: ``round(n * p_val)`` shuffled items go to val (upstream order).

    Classes are visited in first-appearance order and each one's index list is shuffled with
    the global ``random``, so the result equals upstream's for the same seed.
    """
    p_trn = 1 - p_val
    logger.info(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    tracker: dict[int, list[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)

    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise ValueError(
                f"Class {label} ({trainval[idxs[0]].classname!r}) has only {len(idxs)} "
                f"trainval images: too few to hold out {p_val:.0%} for validation."
            )
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Iterable[str] = (),
    new_cnames: dict[str, str] | None = None,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Split an ``image_dir/<class>/<image>`` tree per class into train/val/test (upstream).

    Labels follow the sorted class-folder names (plain sort: uppercase first) minus ``ignored``;
    each class's file list (directory order, as upstream) is shuffled with the global
    ``random``; ``round(n*p_trn)`` go to train, ``round(n*p_val)`` to val, the rest to test. The
    class name is then renamed through ``new_cnames``. Used by DTD, EuroSAT, Food101, Caltech101.
    """
    ignored = set(ignored)
    categories = [
        c
        for c in listdir_nohidden(image_dir)
        if c not in ignored and os.path.isdir(os.path.join(image_dir, c))
    ]
    categories.sort()
    if not categories:
        raise DatasetLayoutError(f"No class folders found in {image_dir}.")

    p_tst = 1 - p_trn - p_val
    logger.info(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")

    train: list[Datum] = []
    val: list[Datum] = []
    test: list[Datum] = []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, im) for im in listdir_nohidden(category_dir)]
        random.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if not (n_train > 0 and n_val > 0 and n_test > 0):
            raise ValueError(
                f"Class folder {category_dir} has {n_total} images: too few for a "
                f"{p_trn:.0%}/{p_val:.0%}/{p_tst:.0%} train/val/test split."
            )
        cname = new_cnames.get(category, category) if new_cnames else category

        def _collate(ims: list[str], y: int = label, c: str = cname) -> list[Datum]:
            return [Datum(impath=im, label=y, classname=c) for im in ims]

        train.extend(_collate(images[:n_train]))
        val.extend(_collate(images[n_train : n_train + n_val]))
        test.extend(_collate(images[n_train + n_val :]))
    return train, val, test


# ---------------------------------------------------------------------------------------------
# Pickled Datum lists (few-shot caches, ImageNet's preprocessed.pkl)
# ---------------------------------------------------------------------------------------------

_SAFE_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool")


class _DatumUnpickler(pickle.Unpickler):
    """Resolves only ``Datum`` and plain builtin containers: a downloaded cache cannot run code."""

    _allowed = {
        ("dassl.data.datasets.base_dataset", "Datum"): Datum,
        # protocol 0/1 pickles rebuild instances through copyreg._reconstructor(cls, object, None)
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("builtins", "object"): object,
        ("__builtin__", "object"): object,
        **{("builtins", n): getattr(__import__("builtins"), n) for n in _SAFE_BUILTINS},
        **{("__builtin__", n): getattr(__import__("builtins"), n) for n in _SAFE_BUILTINS},
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a dataset cache may only hold "
                "dassl.data.datasets.base_dataset.Datum objects in plain lists/dicts"
            ) from None


def load_datum_pickle(path: str) -> Any:
    """Unpickle a dataset cache with the restricted unpickler (upstream pickles load)."""
    with open(path, "rb") as f:
        return _DatumUnpickler(f).load()


def save_datum_pickle(obj: Any, path: str) -> None:
    """Pickle (highest protocol) atomically, creating the parent folder."""
    with atomic_write(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def is_datum_list(x: Any) -> bool:
    """True for a list whose items are all Datum (the shape of a valid cache entry)."""
    return isinstance(x, list) and all(isinstance(it, Datum) for it in x)


def _missing_paths(paths: Iterable[str]) -> list[str]:
    """Paths that are not files; one directory listing per folder instead of one stat each."""
    listings: dict[str, frozenset[str] | None] = {}
    missing = []
    for p in paths:
        d, base = os.path.split(p)
        if d not in listings:
            try:
                with os.scandir(d or ".") as it:
                    listings[d] = frozenset(e.name for e in it)
            except OSError:
                listings[d] = None
        names = listings[d]
        if names is None or base not in names:
            missing.append(p)
    return missing


def class_info(splits: Iterable[Sequence[Datum] | None]) -> list[str]:
    """Class names in label order over the union of ``splits`` (labels must be 0..n-1)."""
    names: dict[int, str] = {}
    for split in splits:
        for item in split or []:
            names.setdefault(item.label, item.classname)
    labels = sorted(names)
    if labels != list(range(len(labels))):
        raise ValueError(
            f"class labels are not contiguous from 0 (got {labels[:5]}...{labels[-5:]}); "
            "the split file is inconsistent"
        )
    return [names[y] for y in labels]


# ---------------------------------------------------------------------------------------------
# The base class
# ---------------------------------------------------------------------------------------------


class CoOpDataset(DatasetBase):
    """A dataset in CoOp's on-disk layout (see the module docstring for the flow and hooks).

    Class attributes set by subclasses: ``dataset_dir`` (folder name under the root; the
    instance attribute of the same name is the absolute path, as upstream), ``image_subdir``,
    ``split_file``, ``split_relative_to`` (``"image_dir"`` or ``"dataset_dir"``),
    ``annotation_files`` (paths relative to the dataset folder that :meth:`build_splits` reads).

    Extra attributes for base-to-novel trainers (no trainer names are known here):
    ``all_classnames``, ``base_classes``/``new_classes`` (ranges over full labels),
    ``full_splits`` (``{"train", "val", "test"}`` with full labels, after few-shot sampling,
    before ``DATASET.SUBSAMPLE_CLASSES``).
    """

    dataset_dir = ""
    image_subdir = "images"
    split_file: str | None = None
    split_relative_to = "image_dir"
    annotation_files: tuple[str, ...] = ()
    #: heading anchor in docs/DATASETS.md; default: the class name lower-cased
    docs_anchor: str | None = None

    all_classnames: list[str]
    base_classes: range
    new_classes: range
    full_splits: dict[str, list[Datum]]

    def __init__(self, cfg: Any) -> None:
        root = resolve_root(cfg)
        self.root = root
        self.dataset_dir = os.path.join(root, type(self).dataset_dir)
        self.image_dir = (
            os.path.join(self.dataset_dir, self.image_subdir)
            if self.image_subdir
            else self.dataset_dir
        )
        self.split_path = (
            os.path.join(self.dataset_dir, self.split_file) if self.split_file else None
        )
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.check_dataset_dir()

        train, val, test = self.load_splits()

        num_shots = int(cfg.DATASET.NUM_SHOTS)
        if num_shots >= 1:
            train, val = self.fewshot_splits(train, val, num_shots, cfg.SEED)

        has_val = val is not None
        self.set_class_info(train, val if has_val else test, test)

        subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
        if has_val:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)
        else:
            # No validation split (ImageNet): upstream evaluates the test set as "val"; use
            # last-step models there (best-val would select on test).
            train, test = subsample_classes(train, test, subsample=subsample)
            val = test
        super().__init__(train_x=list(train), val=list(val), test=list(test))

    # -- hooks -----------------------------------------------------------------------------

    @property
    def _anchor(self) -> str:
        return self.docs_anchor or type(self).__name__.lower()

    @property
    def split_prefix(self) -> str:
        """Folder the split file's relative paths start from."""
        return self.dataset_dir if self.split_relative_to == "dataset_dir" else self.image_dir

    def build_splits(self) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
        """Build (train, val, test) from the original annotation files (upstream order)."""
        raise NotImplementedError(f"{type(self).__name__} has no build_splits()")

    def load_splits(self) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
        """Read the split file if present; else build the splits and save the split file."""
        if self.split_path and os.path.exists(self.split_path):
            self.check_image_dir()
            return read_split(self.split_path, self.split_prefix)
        self.check_annotations()
        train, val, test = self.build_splits()
        if self.split_path:
            try:
                save_split(train, val, test, self.split_path, self.split_prefix)
            except OSError as e:
                logger.warning(
                    f"Could not save the split to {self.split_path} ({e}); later runs will "
                    "regenerate it and may differ unless the seed is the same."
                )
        return train, val, test

    # -- layout checks ---------------------------------------------------------------------

    def check_dataset_dir(self) -> None:
        if not os.path.isdir(self.dataset_dir):
            raise DatasetLayoutError(
                f"{type(self).__name__}: dataset folder {self.dataset_dir} does not exist. "
                f"Expected it under the data root {self.root} (--root / DATASET.ROOT or "
                f"${DATA_ENV_VAR}). See {docs_ref(self._anchor)} for how to obtain and lay "
                "out this dataset."
            )

    def check_image_dir(self) -> None:
        if not os.path.isdir(self.image_dir):
            raise DatasetLayoutError(
                f"{type(self).__name__}: image folder {self.image_dir} does not exist (the "
                f"split file {self.split_path} refers to images in it). See "
                f"{docs_ref(self._anchor)}."
            )

    def check_annotations(self) -> None:
        """Fail with the list of expected files when neither split nor annotations exist."""
        expected = [os.path.join(self.dataset_dir, p) for p in self.annotation_files]
        missing = [p for p in expected if not os.path.exists(p)]
        if not missing:
            return
        lines = []
        if self.split_path:
            lines.append(f"  {self.split_path}  (the split file), or all of:")
        lines += [f"  {p}{'  [missing]' if p in missing else ''}" for p in expected]
        raise DatasetLayoutError(
            f"{type(self).__name__}: cannot load {self.dataset_dir}; expected\n"
            + "\n".join(lines)
            + f"\nDownload them as described in {docs_ref(self._anchor)} (the split files "
            "split_zhou_*.json are also in the HuggingFace mirror "
            "zhengli97/prompt_learning_dataset)."
        )

    # -- few-shot --------------------------------------------------------------------------

    def fewshot_path(self, num_shots: int, seed: int) -> str:
        return os.path.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.pkl")

    def fewshot_splits(
        self, train: list[Datum], val: list[Datum] | None, num_shots: int, seed: int
    ) -> tuple[list[Datum], list[Datum] | None]:
        """K-shot train (and min(K, 4)-shot val), cached in ``split_fewshot/``.

        K larger than the smallest class is refused: upstream silently takes fewer images of
        such classes, which makes the "K-shot" results incomparable.
        """
        counts: dict[str, int] = defaultdict(int)
        for item in train:
            counts[item.classname] += 1
        if counts and min(counts.values()) < num_shots:
            small = min(counts, key=counts.get)
            raise InvalidInputError(
                f"DATASET.NUM_SHOTS {num_shots} is larger than the smallest class of "
                f"{type(self).__name__}'s train split ({small!r}: {counts[small]} images): lower "
                f"DATASET.NUM_SHOTS to at most {counts[small]}"
            )
        path = self.fewshot_path(num_shots, seed)
        keys = ("train", "val") if val is not None else ("train",)
        if os.path.exists(path):
            logger.info(f"Loading preprocessed few-shot data from {path}")
            reference = {it.label: it.classname for split in (train, val) for it in split or []}
            data = self._load_fewshot_cache(path, keys, reference)
            if data is not None:
                return data["train"], (data["val"] if val is not None else None)

        train = self.generate_fewshot_dataset(train, num_shots=num_shots)
        if val is not None:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        data = {"train": train, "val": val} if val is not None else {"train": train}
        logger.info(f"Saving preprocessed few-shot data to {path}")
        try:
            save_datum_pickle(data, path)
        except OSError as e:
            logger.warning(f"Could not save few-shot cache {path} ({e}); continuing without it.")
        return train, val

    def _load_fewshot_cache(
        self, path: str, keys: Sequence[str], reference: dict[int, str]
    ) -> dict[str, list[Datum]] | None:
        """Load and validate a cache; None (after a warning) means "rebuild it"."""
        try:
            data = load_datum_pickle(path)
        except Exception as e:  # corrupt, truncated or refused (non-Datum globals)
            logger.warning(f"Ignoring few-shot cache {path}: cannot read it ({e}); rebuilding it.")
            return None
        if not isinstance(data, dict) or not all(is_datum_list(data.get(k)) for k in keys):
            logger.warning(
                f"Ignoring few-shot cache {path}: expected a dict with Datum lists under "
                f"{list(keys)}; rebuilding it."
            )
            return None
        for k in keys:
            for item in data[k]:
                if reference.get(item.label) != item.classname:
                    logger.warning(
                        f"Ignoring few-shot cache {path}: its {k!r} item {item.impath} has "
                        f"label {item.label} ({item.classname!r}), which does not match the "
                        "current split; rebuilding it."
                    )
                    return None
        out = {}
        for k in keys:
            items = self._resolve_cached_paths(data[k], path, check_all=True)
            if items is None:
                return None
            out[k] = items
        return out

    def _resolve_cached_paths(
        self, items: list[Datum], cache_path: str, check_all: bool
    ) -> list[Datum] | None:
        """Return ``items`` usable under the current dataset folder, remapped if needed.

        Pickled Datums hold absolute paths from when they were created. Paths under the
        current dataset folder that exist are used as they are; otherwise the part up to the
        dataset folder name is replaced by the current dataset folder, and used (with a
        warning) if those files exist; else None (after a warning) so the caller rebuilds.
        ``check_all=False`` checks one item per class (for ImageNet's 1.3M-item pickle).
        """
        if not items:
            return items
        probe = items if check_all else list({it.label: it for it in reversed(items)}.values())
        prefix = self.dataset_dir + os.sep
        if all(it.impath.startswith(prefix) for it in items) and not _missing_paths(
            it.impath for it in probe
        ):
            return items

        name = type(self).dataset_dir
        old_prefix = None
        remapped_paths = []
        for it in items:
            parts = re.split(r"[\\/]", it.impath)
            idx = max((i for i, p in enumerate(parts) if p == name), default=None)
            if idx is None or idx == len(parts) - 1:
                remapped_paths = None
                break
            if old_prefix is None:
                old_prefix = "/".join(parts[: idx + 1])
            remapped_paths.append(os.path.join(self.dataset_dir, *parts[idx + 1 :]))
        if remapped_paths is not None:
            index = {id(it): i for i, it in enumerate(items)}
            missing = _missing_paths(remapped_paths[index[id(it)]] for it in probe)
            if not missing:
                logger.warning(
                    f"{cache_path} holds paths under {old_prefix}, not under the current "
                    f"dataset folder {self.dataset_dir}; using it with paths remapped to the "
                    "current folder (delete the file to rebuild it)."
                )
                return [
                    trusted_datum(p, it.label, it.domain, it.classname)
                    for p, it in zip(remapped_paths, items)
                ]
        first = items[0].impath
        logger.warning(
            f"Ignoring {cache_path}: its image paths (e.g. {first}) do not exist under the "
            f"current dataset folder {self.dataset_dir}, even after remapping; rebuilding it."
        )
        return None

    # -- class metadata --------------------------------------------------------------------

    def set_class_info(
        self, train: list[Datum], val: list[Datum] | None, test: list[Datum]
    ) -> None:
        """Set ``all_classnames``, ``base_classes``, ``new_classes``, ``full_splits``."""
        self.full_splits = {"train": list(train), "val": list(val or []), "test": list(test)}
        self.all_classnames = class_info(self.full_splits.values())
        self.base_classes, self.new_classes = base_new_ranges(len(self.all_classnames))


def trusted_datum(impath: str, label: int, domain: int, classname: str) -> Datum:
    """A Datum for a path already known to exist (listed or checked in bulk): no stat."""
    item = Datum.__new__(Datum)
    item.__dict__.update(_impath=impath, _label=label, _domain=domain, _classname=classname)
    return item


def set_test_only_info(dataset: Any, data: list[Datum]) -> None:
    """Class metadata for the test-only ImageNet variants (no val split)."""
    dataset.full_splits = {"train": list(data), "val": [], "test": list(data)}
    dataset.all_classnames = class_info([data])
    dataset.base_classes, dataset.new_classes = base_new_ranges(len(dataset.all_classnames))
