"""Data roots and clear errors: missing root, folder, split/annotation files, images."""

from __future__ import annotations

import json
import os
import random

import pytest

import datasets  # noqa: F401
from dassl.data.datasets import build_dataset
from datasets.coop_base import DATA_ENV_VAR, DatasetLayoutError
from tests.fake_datasets import FAKES, make_cfg


def _load(root, name, **kw):
    random.seed(1)
    return build_dataset(make_cfg(str(root), name, **kw))


def test_root_from_environment_when_cfg_root_is_empty(tmp_path, monkeypatch):
    FAKES["EuroSAT"](str(tmp_path))
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    ds = _load("", "EuroSAT")
    assert ds.dataset_dir == os.path.join(str(tmp_path), "eurosat")


def test_cfg_root_wins_over_environment(tmp_path, monkeypatch):
    FAKES["EuroSAT"](str(tmp_path / "a"))
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "elsewhere"))
    assert _load(tmp_path / "a", "EuroSAT").dataset_dir.startswith(str(tmp_path / "a"))


def test_no_root_at_all(monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    with pytest.raises(DatasetLayoutError, match=f"--root.*{DATA_ENV_VAR}"):
        _load("", "OxfordPets")


@pytest.mark.parametrize("name", list(FAKES))
def test_missing_dataset_folder_points_to_the_docs(tmp_path, name):
    with pytest.raises(DatasetLayoutError) as e:
        _load(tmp_path, name)
    msg = str(e.value)
    assert str(tmp_path) in msg and f"docs/DATASETS.md#{name.lower()}" in msg


def test_missing_split_and_annotations_lists_expected_files(tmp_path):
    os.makedirs(tmp_path / "stanford_cars")
    with pytest.raises(DatasetLayoutError) as e:
        _load(tmp_path, "StanfordCars")
    msg = str(e.value)
    d = str(tmp_path / "stanford_cars")
    for f in ("split_zhou_StanfordCars.json", "devkit/cars_train_annos.mat",
              "cars_test_annos_withlabels.mat", "devkit/cars_meta.mat"):  # fmt: skip
        assert os.path.join(d, f) in msg
    assert "docs/DATASETS.md#stanfordcars" in msg
    assert "zhengli97/prompt_learning_dataset" in msg


def test_missing_image_names_the_file_and_the_split_json(tmp_path):
    fake = FAKES["OxfordFlowers"](str(tmp_path))
    _load(tmp_path, "OxfordFlowers")
    with open(fake.split_file) as f:
        rel = json.load(f)["test"][0][0]
    os.remove(os.path.join(fake.dataset_dir, "jpg", rel))
    with pytest.raises(DatasetLayoutError) as e:
        _load(tmp_path, "OxfordFlowers")
    assert os.path.join(fake.dataset_dir, "jpg", rel) in str(e.value)
    assert fake.split_file in str(e.value) and "'test'" in str(e.value)


def test_missing_image_dir_with_split_json(tmp_path):
    fake = FAKES["DescribableTextures"](str(tmp_path))
    _load(tmp_path, "DescribableTextures")
    os.rename(os.path.join(fake.dataset_dir, "images"), os.path.join(fake.dataset_dir, "img"))
    with pytest.raises(DatasetLayoutError, match="images does not exist"):
        _load(tmp_path, "DescribableTextures")


def test_missing_image_in_annotation_list_names_the_list(tmp_path):
    fake = FAKES["FGVCAircraft"](str(tmp_path))
    with open(os.path.join(fake.dataset_dir, "images_variant_val.txt")) as f:
        first = f.readline().split(" ")[0]
    os.remove(os.path.join(fake.dataset_dir, "images", first + ".jpg"))
    with pytest.raises(DatasetLayoutError, match=r"images_variant_val\.txt"):
        _load(tmp_path, "FGVCAircraft")


def test_invalid_subsample_value(tmp_path):
    FAKES["DescribableTextures"](str(tmp_path))
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        _load(tmp_path, "DescribableTextures", subsample="novel")


def test_imagenet_flat_val_folder_is_explained(tmp_path):
    fake = FAKES["ImageNet"](str(tmp_path))
    val = os.path.join(fake.dataset_dir, "images", "val")
    for w in os.listdir(val):
        for f in os.listdir(os.path.join(val, w)):
            os.rename(os.path.join(val, w, f), os.path.join(val, f))
        os.rmdir(os.path.join(val, w))
    with pytest.raises(DatasetLayoutError, match="one folder per wnid"):
        _load(tmp_path, "ImageNet")


def test_test_only_variant_lists_missing_classnames(tmp_path):
    fake = FAKES["ImageNetA"](str(tmp_path))
    os.remove(os.path.join(fake.dataset_dir, "classnames.txt"))
    with pytest.raises(DatasetLayoutError, match=r"classnames\.txt  \[missing\]"):
        _load(tmp_path, "ImageNetA")
