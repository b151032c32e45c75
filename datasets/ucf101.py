"""UCF101 action recognition, as middle frames (101 classes)."""

from __future__ import annotations

import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_base import CoOpDataset, DatasetLayoutError, make_datum, split_trainval


def underscore_action(action: str) -> str:
    """``"ApplyEyeMakeup"`` -> ``"Apply_Eye_Makeup"`` (split before capitals)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register(builtin=True)
class UCF101(CoOpDataset):
    """``ucf101/UCF-101-midframes/<Action_Name>/<clip>.jpg`` + ``split_zhou_UCF101.json``.

    Fallback: ``ucfTrainTestlist/classInd.txt`` (``<id> <Action>``), ``trainlist01.txt``
    (80/20 train/val) and ``testlist01.txt``; ``.avi`` entries map to the ``.jpg`` frame.
    """

    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    annotation_files = (
        "UCF-101-midframes",
        "ucfTrainTestlist/classInd.txt",
        "ucfTrainTestlist/trainlist01.txt",
        "ucfTrainTestlist/testlist01.txt",
    )

    def build_splits(self):
        cname2lab = {}
        filepath = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        with open(filepath, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                label, classname = line.strip().split(" ")
                cname2lab[classname] = int(label) - 1
        trainval = self.read_data(cname2lab, "ucfTrainTestlist/trainlist01.txt")
        test = self.read_data(cname2lab, "ucfTrainTestlist/testlist01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], text_file: str) -> list[Datum]:
        text_file = os.path.join(self.dataset_dir, text_file)
        items = []
        with open(text_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                entry = line.strip().split(" ")[0]  # trainlist lines also carry a label
                if not entry:
                    continue
                action, filename = entry.split("/")
                if action not in cname2lab:
                    raise DatasetLayoutError(
                        f"{text_file}:{lineno}: action {action!r} is not in classInd.txt"
                    )
                renamed = underscore_action(action)
                impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
                items.append(make_datum(impath, cname2lab[action], renamed, text_file))
        return items
