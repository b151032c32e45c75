"""Data half of the engine: transforms, Datum/DatasetBase, samplers, DataManager."""

import io
import logging
import os
import pickle
import random
import sys

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dassl.config import get_cfg_default
from dassl.data import DatasetWrapper
from dassl.data.data_manager import build_data_loader
from dassl.data.datasets import DatasetBase, Datum
from dassl.data.samplers import (
    RandomClassSampler,
    RandomDomainSampler,
    SeqDomainSampler,
    ShardedEvalSampler,
    build_sampler,
)
from dassl.data.transforms import INTERPOLATION_MODES, build_transform


def _cfg(**input_kw):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (16, 16)
    for k, v in input_kw.items():
        setattr(cfg.INPUT, k, v)
    return cfg


def _lines(capsys):
    return [ln for ln in capsys.readouterr().out.splitlines() if ln]


@pytest.fixture(autouse=True)
def _log_to_stdout():
    # get_logger writes to the *current* sys.stdout, which capsys replaces
    logging.getLogger("dassl").setLevel(logging.INFO)


def test_train_pipeline_fixed_order_and_prints(capsys):
    # listed in scrambled order: the pipeline order is fixed (P13)
    cfg = _cfg(TRANSFORMS=["normalize", "random_flip", "random_resized_crop", "center_crop"])
    tfm = build_transform(cfg, is_train=True)
    assert _lines(capsys) == [
        "Building transform_train",
        "+ random resized crop (size=(16, 16), scale=(0.08, 1.0))",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
        "+ normalization (mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])",
    ]
    types = [type(t) for t in tfm.transforms]
    assert types == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    out = tfm(Image.new("RGB", (40, 24), (10, 200, 30)))
    assert out.shape == (3, 16, 16)


def test_train_pipeline_every_name_in_order(capsys):
    everything = [
        "instance_norm",
        "gaussian_noise",
        "normalize",
        "cutout",
        "gaussian_blur",
        "randomgrayscale",
        "colorjitter",
        "randaugment2",
        "randaugment_fixmatch",
        "randaugment",
        "svhn_policy",
        "cifar10_policy",
        "imagenet_policy",
        "random_flip",
        "random_crop",
        "random_translation",
    ]
    cfg = _cfg(TRANSFORMS=everything, GB_K=3)
    tfm = build_transform(cfg, is_train=True)
    lines = _lines(capsys)
    assert lines == [
        "Building transform_train",
        "+ random translation",
        "+ random crop (padding = 4)",
        "+ random flip",
        "+ imagenet policy",
        "+ cifar10 policy",
        "+ svhn policy",
        "+ randaugment (n=2, m=10)",
        "+ randaugment_fixmatch (n=2)",
        "+ randaugment2 (n=2)",
        "+ color jitter (brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)",
        "+ random gray scale",
        "+ gaussian blur (kernel=3)",
        "+ to torch tensor of range [0, 1]",
        "+ cutout (n_holes=1, length=16)",
        "+ normalization (mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])",
        "+ gaussian noise (mean=0.0, std=0.15)",
        "+ instance normalization",
    ]
    torch.manual_seed(0)
    out = tfm(Image.new("RGB", (20, 20), (120, 60, 30)))
    assert out.shape == (3, 16, 16)
    # instance norm is last: every channel standardised
    assert torch.allclose(out.flatten(1).mean(1), torch.zeros(3), atol=1e-4)


def test_train_without_crop_resizes_exactly(capsys):
    tfm = build_transform(_cfg(TRANSFORMS=["random_flip"]), is_train=True)
    assert _lines(capsys)[1] == "+ resize to 16x16"
    # aspect ratio not kept (upstream semantics)
    assert tfm(Image.new("RGB", (50, 10))).shape == (3, 16, 16)


def test_test_pipeline(capsys):
    cfg = _cfg(TRANSFORMS=["random_flip", "random_resized_crop", "normalize"])
    cfg.INPUT.INTERPOLATION = "bicubic"
    tfm = build_transform(cfg, is_train=False)
    assert _lines(capsys) == [
        "Building transform_test",
        "+ resize the smaller edge to 16",
        "+ 16x16 center crop",
        "+ to torch tensor of range [0, 1]",
        "+ normalization (mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])",
    ]
    assert tfm.transforms[0].interpolation == INTERPOLATION_MODES["bicubic"]
    assert tfm(Image.new("RGB", (40, 24))).shape == (3, 16, 16)


def test_no_transform_and_invalid_name(capsys):
    cfg = _cfg(NO_TRANSFORM=True)
    assert build_transform(cfg) is None
    assert _lines(capsys) == ["Note: no transform is applied!"]
    with pytest.raises(AssertionError, match="random_flipp"):
        build_transform(_cfg(TRANSFORMS=["random_flipp"]))


# ------------------------------------------------------------------ Datum / DatasetBase


def _images(tmp_path, n, size=8):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (size, size), (i * 7 % 255, 0, 0)).save(p)
        paths.append(str(p))
    return paths


def test_datum_checks_existence(tmp_path):
    (p,) = _images(tmp_path, 1)
    d = Datum(impath=p, label=3, domain=1, classname="cat")
    assert (d.impath, d.label, d.domain, d.classname) == (p, 3, 1, "cat")
    assert vars(d) == {"_impath": p, "_label": 3, "_domain": 1, "_classname": "cat"}
    with pytest.raises(AttributeError):
        d.label = 4
    missing = str(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        Datum(impath=missing)
    # a file created after the directory listing was cached is still found
    Image.new("RGB", (4, 4)).save(missing)
    assert Datum(impath=missing).impath == missing
    with pytest.raises(TypeError):
        Datum(impath=123)


def test_upstream_datum_pickle_loads(tmp_path):
    """A pickle written by upstream Dassl: class path + private attribute dict, no __init__."""
    # Build the byte stream by hand with a stand-in class at the upstream path so that the
    # real constructor is not involved (upstream pickles never call it).
    payload = {"_impath": "/old/root/x.jpg", "_label": 5, "_domain": 0, "_classname": "dog"}

    class _Fake:
        pass

    _Fake.__module__ = "dassl.data.datasets.base_dataset"
    _Fake.__qualname__ = "Datum"
    obj = _Fake()
    obj.__dict__.update(payload)
    mod = sys.modules["dassl.data.datasets.base_dataset"]
    real = mod.Datum
    mod.Datum = _Fake  # let pickle resolve the class path while dumping
    try:
        raw = pickle.dumps({"train": [obj], "val": []}, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        mod.Datum = real
    assert b"dassl.data.datasets.base_dataset" in raw and b"_classname" in raw

    data = pickle.load(io.BytesIO(raw))
    item = data["train"][0]
    assert type(item) is Datum
    assert (item.impath, item.label, item.domain, item.classname) == (
        "/old/root/x.jpg",
        5,
        0,
        "dog",
    )
    # and our own Datums round-trip with the same attribute dict
    (p,) = _images(tmp_path, 1)
    again = pickle.loads(pickle.dumps(Datum(p, 1, 0, "a")))
    assert vars(again) == {"_impath": p, "_label": 1, "_domain": 0, "_classname": "a"}


def _dataset(tmp_path, n_per_class=(5, 3, 6)):
    paths = _images(tmp_path, sum(n_per_class))
    items, k = [], 0
    for label, n in enumerate(n_per_class):
        for _ in range(n):
            items.append(Datum(paths[k], label, domain=k % 2, classname=f"c{label}"))
            k += 1
    return items


def test_dataset_base_metadata(tmp_path):
    items = _dataset(tmp_path)
    ds = DatasetBase(train_x=items, test=items[:2])
    assert ds.num_classes == 3
    assert ds.classnames == ["c0", "c1", "c2"]
    assert ds.lab2cname == {0: "c0", 1: "c1", 2: "c2"}
    assert ds.val is None and ds.train_u is None
    assert list(ds.split_dataset_by_domain(items)) == [0, 1]


def test_fewshot_sampling_is_deterministic_and_upstream(tmp_path):
    items = _dataset(tmp_path)
    ds = DatasetBase(train_x=items)

    random.seed(3)
    a = ds.generate_fewshot_dataset(items, num_shots=4)
    random.seed(3)
    b = ds.generate_fewshot_dataset(items, num_shots=4)
    assert [x.impath for x in a] == [x.impath for x in b]
    # per label: 4 sampled (or all 3 when the class is smaller and repeat=False), label order
    assert [x.label for x in a] == [0] * 4 + [1] * 3 + [2] * 4

    # exactly upstream's draws: one random.sample per label in first-appearance order
    random.seed(3)
    groups = ds.split_dataset_by_label(items)
    expected = []
    for label_items in groups.values():
        expected += random.sample(label_items, 4) if len(label_items) >= 4 else list(label_items)
    assert [x.impath for x in a] == [x.impath for x in expected]

    random.seed(4)
    train, val = ds.generate_fewshot_dataset(items, items, num_shots=2)
    assert len(train) == len(val) == 6
    random.seed(5)
    rep = ds.generate_fewshot_dataset(items, num_shots=4, repeat=True)
    assert [x.label for x in rep].count(1) == 4
    assert ds.generate_fewshot_dataset(items, num_shots=0) is items


# ------------------------------------------------------------------ samplers / loaders


def test_samplers(tmp_path):
    items = _dataset(tmp_path, (4, 4, 4, 4))
    g = torch.Generator().manual_seed(0)
    rs = build_sampler("RandomSampler", data_source=items, generator=g)
    assert sorted(rs) == list(range(16))
    assert list(build_sampler("SequentialSampler", data_source=items)) == list(range(16))

    rds = RandomDomainSampler(items, batch_size=4, n_domain=2, generator=g)
    idx = list(rds)
    assert len(idx) % 4 == 0 and len(set(idx)) == len(idx)
    for b in range(0, len(idx), 4):
        doms = [items[i].domain for i in idx[b : b + 4]]
        assert sorted(doms) == [0, 0, 1, 1]

    sds = SeqDomainSampler(items, batch_size=4, generator=g)
    idx = list(sds)
    assert len(idx) == len(sds) == 16
    assert [items[i].domain for i in idx[:4]] == [0, 0, 1, 1]

    rcs = RandomClassSampler(items, batch_size=4, n_ins=2, generator=g)
    idx = list(rcs)
    assert len(idx) == len(rcs) == 16
    for b in range(0, 16, 2):
        assert items[idx[b]].label == items[idx[b + 1]].label

    with pytest.raises(ValueError, match="RandomSampler"):
        build_sampler("Nope", data_source=items)

    shards = [list(ShardedEvalSampler(list(range(7)), 3, r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))  # no padding, no duplicates
    assert [len(ShardedEvalSampler(list(range(7)), 3, r)) for r in range(3)] == [3, 2, 2]


def test_loader_seeded_order_and_wrapper(tmp_path):
    items = _dataset(tmp_path, (3, 3, 3))
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (8, 8)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.RETURN_IMG0 = True
    cfg.SEED = 5
    tfm = build_transform(cfg, is_train=False)

    def order():
        g = torch.Generator().manual_seed(11)
        loader = build_data_loader(
            cfg, "RandomSampler", items, batch_size=4, tfm=tfm, is_train=True, generator=g
        )
        return [b["index"].tolist() for b in loader]

    first = order()
    assert first == order()
    assert len(first) == 2  # 9 items, batch 4, drop_last
    loader = build_data_loader(
        cfg, "SequentialSampler", items, batch_size=4, tfm=tfm, is_train=False
    )
    batches = list(loader)
    assert len(batches) == 3  # no drop_last for evaluation
    b = batches[0]
    assert b["img"].shape == (4, 3, 8, 8) and b["img0"].shape == (4, 3, 8, 8)
    assert b["label"].dtype == torch.int64 and isinstance(b["impath"][0], str)

    cfg.DATALOADER.K_TRANSFORMS = 2
    w = DatasetWrapper(cfg, items, transform=[tfm, tfm], is_train=True)
    out = w[0]
    assert isinstance(out["img"], list) and len(out["img"]) == 2 and "img2" in out
    with pytest.raises(ValueError, match="K_TRANSFORMS"):
        DatasetWrapper(cfg, items, transform=None, is_train=True)
    assert os.path.exists(out["impath"])


def test_datum_existence_cache_large_and_small_dirs(tmp_path, monkeypatch):
    import dassl.data.datasets.base_dataset as bd

    monkeypatch.setattr(bd, "_MIN_CACHED_ENTRIES", 3)
    big = tmp_path / "big"
    big.mkdir()
    paths = _images(big, 4)
    assert [Datum(p).impath for p in paths] == paths
    assert str(big) in bd._DIR_CACHE  # listed once, reused
    small = tmp_path / "small"
    small.mkdir()
    (p,) = _images(small, 1)
    Datum(p)
    os.remove(p)
    with pytest.raises(FileNotFoundError):
        Datum(p)  # small folders are always checked for real
