"""Tiny fake copies of the multi-domain benchmarks in their exact on-disk layouts (tests only).

Each ``make_<name>(root)`` writes the real folder and file names (Dassl's PACS split files with
1-based labels, VLCS's upper-case domain folders with numeric class folders, VisDA-2017's
``image_list.txt``, ImageCLEF-DA's ``list/<d>List.txt``) with a few 8x8 JPEGs, and returns the
per-domain ``{domain: {split: [(relative path, label)]}}`` the loader must produce.
"""

from __future__ import annotations

import os

from tests.fake_datasets import _write_text, write_image

__all__ = ["DOMAIN_FAKES"]


def make_pacs(root: str) -> dict:
    d = os.path.join(root, "pacs")
    classes = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]
    expected: dict = {}
    for domain in ("art_painting", "cartoon", "photo", "sketch"):
        files = {"train": [], "crossval": []}
        for label, c in enumerate(classes):
            for part, n in (("train", 2), ("crossval", 1)):
                for i in range(n):
                    rel = f"{domain}/{c}/{part}_{i}.jpg"
                    write_image(os.path.join(d, "images", rel))
                    files[part].append((rel, label))
        if domain == "sketch":  # Dassl's known-corrupt image: listed, never loaded
            files["train"].append(("sketch/dog/n02103406_4068-1.png", 0))
        for part, items in files.items():
            lines = [f"{rel} {y + 1}" for rel, y in items]
            _write_text(os.path.join(d, "splits", f"{domain}_{part}_kfold.txt"), lines)
        # the test split file exists upstream but Dassl's "all" = train + crossval
        _write_text(os.path.join(d, "splits", f"{domain}_test_kfold.txt"), lines)
        keep = [x for x in files["train"] if "4068-1" not in x[0]]
        expected[domain] = {
            "train": [(f"images/{r}", y) for r, y in keep],
            "val": [(f"images/{r}", y) for r, y in files["crossval"]],
            "test": [(f"images/{r}", y) for r, y in keep + files["crossval"]],
        }
    return {"name": "PACS", "dir": d, "classnames": classes, "domains": expected}


def make_vlcs(root: str) -> dict:
    d = os.path.join(root, "VLCS")
    classes = ["bird", "car", "chair", "dog", "person"]
    expected: dict = {}
    for domain in ("caltech", "labelme", "pascal", "sun"):
        expected[domain] = {}
        for split, folder, n in (
            ("train", "train", 2),
            ("val", "crossval", 1),
            ("test", "test", 2),
        ):
            items = []
            for label in range(5):
                for i in range(n):
                    rel = f"{domain.upper()}/{folder}/{label}/{i}.jpg"
                    write_image(os.path.join(d, rel))
                    items.append((rel, label))
            expected[domain][split] = items
        write_image(os.path.join(d, domain.upper(), "full", "0", "x.jpg"))  # unused folder
    return {"name": "VLCS", "dir": d, "classnames": classes, "domains": expected}


def make_visda17(root: str) -> dict:
    d = os.path.join(root, "visda17")
    classes = ["aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person",
               "plant", "skateboard", "train", "truck"]  # fmt: skip
    expected = {}
    for domain, folder in (("synthetic", "train"), ("real", "validation")):
        items = []
        for label, c in enumerate(classes):
            for i in range(2):
                rel = f"{c}/{folder[:3]}_{label}_{i}.png"
                write_image(os.path.join(d, folder, rel))
                items.append((f"{folder}/{rel}", label))
        _write_text(
            os.path.join(d, folder, "image_list.txt"),
            [f"{r[len(folder) + 1 :]} {y}" for r, y in items],
        )
        expected[domain] = {"train": items, "val": [], "test": items}  # Dassl: no val
    return {"name": "VisDA17", "dir": d, "classnames": classes, "domains": expected}


def make_imageclef(root: str) -> dict:
    d = os.path.join(root, "image_CLEF")
    classes = ["aeroplane", "bike", "bird", "boat", "bottle", "bus", "car", "dog", "horse",
               "monitor", "motorbike", "people"]  # fmt: skip
    expected = {}
    for domain in ("b", "c", "i", "p"):
        items, lines = [], []
        for label in range(12):
            for i in range(2):
                rel = f"{domain}/{label}_{i:04d}.jpg"
                write_image(os.path.join(d, rel))
                items.append((rel, label))
                # some released cList.txt files list an extra folder level that is not on disk
                listed = f"c/extra/{label}_{i:04d}.jpg" if domain == "c" else rel
                lines.append(f"{listed} {label}")
        _write_text(os.path.join(d, "list", f"{domain}List.txt"), lines, newline="\r\n")
        expected[domain] = {"train": items, "val": items, "test": items}
    return {"name": "ImageCLEFDA", "dir": d, "classnames": classes, "domains": expected}


DOMAIN_FAKES = {
    "PACS": make_pacs,
    "VLCS": make_vlcs,
    "VisDA17": make_visda17,
    "ImageCLEFDA": make_imageclef,
}
