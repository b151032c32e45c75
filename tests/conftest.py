import os

import pytest
import torch

# Two cores on CI: keep intra-op threads small so parallel work does not thrash.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return ROOT
