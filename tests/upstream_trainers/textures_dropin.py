"""A dataset written the way upstream ``datasets/*.py`` files are: it lives in the ``datasets``
package, borrows ``OxfordPets``'s and ``DTD``'s static helpers with relative imports, and
registers the name of one of our built-in datasets."""

import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from dassl.utils import mkdir_if_missing

from .dtd import DescribableTextures as DTD
from .oxford_pets import OxfordPets


@DATASET_REGISTRY.register()
class DescribableTextures(DatasetBase):
    dataset_dir = "dtd"

    def __init__(self, cfg):
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(root, self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_DescribableTextures.json")
        mkdir_if_missing(os.path.join(self.dataset_dir, "split_fewshot"))
        if os.path.exists(self.split_path):
            train, val, test = OxfordPets.read_split(self.split_path, self.image_dir)
        else:
            train, val, test = DTD.read_and_split_data(self.image_dir)
            OxfordPets.save_split(train, val, test, self.split_path, self.image_dir)
        if cfg.DATASET.NUM_SHOTS >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        train, val, test = OxfordPets.subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)
