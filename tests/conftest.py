import os

import pytest
import torch

# Two cores on CI: keep intra-op threads small so parallel work does not thrash.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory):
    """ToyShapes (one image per class and split) and the train.py arguments toy runs share:
    ``flags`` (command-line flags) and ``opts`` (``KEY VALUE`` overrides, 1 epoch)."""
    from types import SimpleNamespace

    from datasets.toy_shapes import generate_toy_shapes

    root = str(tmp_path_factory.mktemp("toy_world") / "data")
    generate_toy_shapes(root, n_train=1, n_val=1, n_test=1)
    dataset_yaml = os.path.join(ROOT, "configs", "datasets", "toy_shapes.yaml")
    flags = ["--root", root, "--seed", "1", "--dataset-config-file", dataset_yaml]
    opts = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "64"]
    opts += ["INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1"]
    return SimpleNamespace(root=root, flags=flags, opts=opts)
