"""Few-shot caches: upstream pickles load, stale paths are remapped or rebuilt, code is refused."""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import struct

import datasets  # noqa: F401
from dassl.data.datasets import Datum, build_dataset
from datasets.coop_base import load_datum_pickle
from tests.fake_datasets import FAKES, make_cfg


def _load(root, name, seed=1, **kw):
    random.seed(seed)
    return build_dataset(make_cfg(str(root), name, seed=seed, **kw))


# A pickle written without our Datum class: protocol-2 opcodes for
# dassl.data.datasets.base_dataset.Datum objects whose __dict__ is the upstream attribute dict.
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _upstream_datum(impath: str, label: int, classname: str) -> bytes:
    state = [("_impath", impath), ("_label", label), ("_domain", 0), ("_classname", classname)]
    body = b"".join(_str(k) + (_int(v) if isinstance(v, int) else _str(v)) for k, v in state)
    return b"cdassl.data.datasets.base_dataset\nDatum\n)\x81}(" + body + b"ub"


def _upstream_cache(splits: dict[str, list[tuple[str, int, str]]]) -> bytes:
    out = b"\x80\x02}("
    for key, items in splits.items():
        out += _str(key) + b"](" + b"".join(_upstream_datum(*it) for it in items) + b"e"
    return out + b"u."


def _triples(items):
    return [(it.impath, it.label, it.classname) for it in items]


def _pick(full, per_class=1):
    seen, out = {}, []
    for it in full:
        if seen.get(it.label, 0) < per_class:
            seen[it.label] = seen.get(it.label, 0) + 1
            out.append((it.impath, it.label, it.classname))
    return out


def test_crafted_upstream_pickle_loads_and_is_used(tmp_path, caplog):
    FAKES["OxfordPets"](str(tmp_path))
    full = _load(tmp_path, "OxfordPets")
    train, val = _pick(full.train_x), _pick(full.val)
    cache = os.path.join(full.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    os.makedirs(os.path.dirname(cache))
    with open(cache, "wb") as f:
        f.write(_upstream_cache({"train": train, "val": val}))
    data = load_datum_pickle(cache)
    assert all(type(it) is Datum for it in data["train"])
    assert data["train"][0].__dict__ == {
        "_impath": train[0][0], "_label": train[0][1], "_domain": 0, "_classname": train[0][2]
    }  # fmt: skip
    with caplog.at_level("WARNING"):
        ds = _load(tmp_path, "OxfordPets", num_shots=1)
    assert _triples(ds.train_x) == train and _triples(ds.val) == val
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing stale


def test_highest_protocol_pickle_of_datums_loads(tmp_path):
    FAKES["DescribableTextures"](str(tmp_path))
    full = _load(tmp_path, "DescribableTextures")
    path = tmp_path / "c.pkl"
    with open(path, "wb") as f:
        pickle.dump({"train": full.train_x}, f, protocol=pickle.HIGHEST_PROTOCOL)
    assert _triples(load_datum_pickle(str(path))["train"]) == _triples(full.train_x)


def test_stale_paths_are_remapped_with_a_warning(tmp_path, caplog):
    old, new = tmp_path / "old_root", tmp_path / "new_root"
    FAKES["Caltech101"](str(old))
    _load(old, "Caltech101", num_shots=2)  # writes the split json and the cache
    built = _load(old, "Caltech101", num_shots=2)
    shutil.move(str(old), str(new))  # the data moved: cached absolute paths are stale
    with caplog.at_level("WARNING"):
        ds = _load(new, "Caltech101", num_shots=2, seed=1)
    assert "remapped" in caplog.text and str(old) in caplog.text
    new_dir = os.path.join(str(new), "caltech-101")
    expected = [(p.replace(str(old), str(new)), y, c) for p, y, c in _triples(built.train_x)]
    assert _triples(ds.train_x) == expected
    assert all(it.impath.startswith(new_dir + os.sep) for it in ds.train_x + ds.val)


def test_unresolvable_paths_rebuild_with_a_warning(tmp_path, caplog):
    FAKES["OxfordPets"](str(tmp_path))
    full = _load(tmp_path, "OxfordPets")
    bogus = [("/nowhere/at/all/x.jpg", y, c) for _, y, c in _pick(full.train_x)]
    cache = os.path.join(full.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    os.makedirs(os.path.dirname(cache))
    with open(cache, "wb") as f:
        f.write(_upstream_cache({"train": bogus, "val": _pick(full.val)}))
    with caplog.at_level("WARNING"):
        ds = _load(tmp_path, "OxfordPets", num_shots=1)
    assert "rebuilding" in caplog.text and cache in caplog.text
    assert all(os.path.isfile(it.impath) for it in ds.train_x)
    # the rebuilt cache replaced the stale one
    assert _triples(load_datum_pickle(cache)["train"]) == _triples(ds.train_x)


def test_cache_from_another_split_is_rebuilt(tmp_path, caplog):
    FAKES["OxfordPets"](str(tmp_path))
    full = _load(tmp_path, "OxfordPets")
    wrong = [(p, y, "not-" + c) for p, y, c in _pick(full.train_x)]
    cache = os.path.join(full.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    os.makedirs(os.path.dirname(cache))
    with open(cache, "wb") as f:
        f.write(_upstream_cache({"train": wrong, "val": _pick(full.val)}))
    with caplog.at_level("WARNING"):
        ds = _load(tmp_path, "OxfordPets", num_shots=1)
    assert "does not match the current split" in caplog.text
    assert ds.classnames == full.classnames


def test_pickle_with_code_is_refused_not_executed(tmp_path, caplog):
    FAKES["OxfordPets"](str(tmp_path))
    full = _load(tmp_path, "OxfordPets")
    marker = tmp_path / "pwned"
    cache = os.path.join(full.dataset_dir, "split_fewshot", "shot_1-seed_1.pkl")
    os.makedirs(os.path.dirname(cache))
    with open(cache, "wb") as f:  # os.system("touch <marker>")
        f.write(b"\x80\x02cos\nsystem\n" + _str(f"touch {marker}") + b"\x85R.")
    with caplog.at_level("WARNING"):
        ds = _load(tmp_path, "OxfordPets", num_shots=1)
    assert not marker.exists()
    assert "refusing to load os.system" in caplog.text
    assert len(ds.train_x) == 3


def test_imagenet_caches_train_only_and_reuses_preprocessed(tmp_path, caplog):
    FAKES["ImageNet"](str(tmp_path))
    ds = _load(tmp_path, "ImageNet", num_shots=2)
    pre = os.path.join(ds.dataset_dir, "preprocessed.pkl")
    assert set(load_datum_pickle(pre)) == {"train", "test"}
    cache = load_datum_pickle(os.path.join(ds.dataset_dir, "split_fewshot", "shot_2-seed_1.pkl"))
    assert set(cache) == {"train"}
    # preprocessed.pkl is used even when classnames.txt is gone (as upstream)
    os.remove(os.path.join(ds.dataset_dir, "classnames.txt"))
    with caplog.at_level("INFO"):
        again = _load(tmp_path, "ImageNet", num_shots=2)
    assert f"Loading preprocessed data from {pre}" in caplog.text
    assert _triples(again.train_x) == _triples(ds.train_x)
    assert _triples(again.test) == _triples(ds.test)


def test_imagenet_preprocessed_with_stale_root_is_remapped(tmp_path, caplog):
    old, new = tmp_path / "a", tmp_path / "b"
    FAKES["ImageNet"](str(old))
    built = _load(old, "ImageNet")
    shutil.move(str(old), str(new))
    with caplog.at_level("WARNING"):
        ds = _load(new, "ImageNet")
    assert "remapped" in caplog.text
    assert [p for p, _, _ in _triples(ds.test)] == [
        it.impath.replace(str(old), str(new)) for it in built.test
    ]
