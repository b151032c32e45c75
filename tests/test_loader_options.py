"""DATALOADER speed keys reach the DataLoader (workers, pinning, persistence, prefetch)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data.data_manager import build_data_loader, loader_options
from dassl.data.datasets.base_dataset import Datum


def test_defaults_and_overrides(tmp_path):
    cfg = get_cfg_default()
    cfg.DATALOADER.NUM_WORKERS = 0
    assert loader_options(cfg) == {"num_workers": 0, "pin_memory": torch.cuda.is_available()}
    cfg.DATALOADER.NUM_WORKERS = 3
    cfg.DATALOADER.PERSISTENT_WORKERS = True
    cfg.DATALOADER.PREFETCH_FACTOR = 4
    cfg.USE_CUDA = False
    opts = loader_options(cfg)
    assert opts == {
        "num_workers": 3,
        "pin_memory": False,
        "persistent_workers": True,
        "prefetch_factor": 4,
    }
    path = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(path)
    loader = build_data_loader(cfg, data_source=[Datum(impath=str(path))], batch_size=1)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (3, 4, True)
    assert loader.pin_memory is False
    cfg.DATALOADER.PREFETCH_FACTOR = 0
    with pytest.raises(ValueError, match="PREFETCH_FACTOR"):
        loader_options(cfg)
