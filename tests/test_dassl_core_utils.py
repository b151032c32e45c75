"""dassl.utils helpers, the stdout/log.txt logger, meters, registry, metrics."""

import logging
import os
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dassl.metrics import compute_accuracy, compute_distance_matrix
from dassl.utils import (
    AverageMeter,
    ImageReadError,
    MetricMeter,
    Registry,
    atomic_write,
    check_availability,
    check_isfile,
    close_logger,
    collect_env_info,
    count_num_param,
    get_logger,
    listdir_nohidden,
    read_image,
    read_json,
    set_random_seed,
    setup_logger,
    tolist_if_not,
    write_json,
)


def test_json_roundtrip_bare_filename(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_json({"a": [1, 2]}, "x.json")
    assert read_json("x.json") == {"a": [1, 2]}
    assert open("x.json").read() == '{\n    "a": [\n        1,\n        2\n    ]\n}'
    write_json({"b": 1}, "sub/dir/y.json")
    assert read_json("sub/dir/y.json") == {"b": 1}
    assert sorted(os.listdir(tmp_path)) == ["sub", "x.json"]


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(KeyError), atomic_write(str(p)) as f:
        f.write("new")
        raise KeyError("x")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_read_image_errors(tmp_path):
    img = tmp_path / "a.png"
    Image.new("L", (4, 3)).save(img)
    out = read_image(str(img))
    assert out.mode == "RGB" and out.size == (4, 3)
    with pytest.raises(ImageReadError, match="missing.jpg") as ei:
        read_image(str(tmp_path / "missing.jpg"))
    assert isinstance(ei.value, OSError)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ImageReadError, match="bad.jpg") as ei:
        read_image(str(bad))
    assert ei.value.path == str(bad)


def test_small_helpers(tmp_path):
    (tmp_path / ".hidden").write_text("")
    (tmp_path / "b").write_text("")
    (tmp_path / "A").write_text("")
    assert listdir_nohidden(str(tmp_path), sort=True) == ["A", "b"]
    with pytest.warns(UserWarning, match="No file found"):
        assert check_isfile(str(tmp_path / "zz")) is False
    assert tolist_if_not(3) == [3] and tolist_if_not([3]) == [3]
    with pytest.raises(ValueError, match=r'Did you mean "CoOp"\?') as ei:
        check_availability("Coop", ["CoOp", "CoCoOp", "ZeroshotCLIP"])
    assert "ZeroshotCLIP" in str(ei.value)
    check_availability("CoOp", ["CoOp"])
    assert count_num_param(torch.nn.Linear(3, 2)) == 8


def test_meters():
    m = AverageMeter()
    m.update(torch.tensor(2.0), n=2)
    m.update(5.0)
    assert (m.val, m.sum, m.count, m.avg) == (5.0, 9.0, 3, 3.0)
    e = AverageMeter(ema=True)
    e.update(1.0)
    e.update(1.0)
    assert e.avg == pytest.approx(0.19)
    mm = MetricMeter(delimiter=" ")
    mm.update({"loss": torch.tensor(0.5), "acc": 50.0})
    mm.update({"loss": 1.5, "acc": 100.0})
    mm.update(None)
    assert str(mm) == "loss 1.5000 (1.0000) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError):
        mm.update([1])


def test_registry():
    reg = Registry("THING")

    @reg.register()
    class Alpha:
        pass

    reg.register(type("Beta", (), {}))
    assert "Alpha" in reg and reg.get("Alpha") is Alpha
    assert reg.registered_names() == ["Alpha", "Beta"]
    with pytest.raises(KeyError, match="already registered"):
        reg.register(Alpha)
    reg.register(Alpha, force=True)
    with pytest.raises(KeyError) as ei:
        reg.get("Alpah")
    msg = ei.value.args[0]
    assert "Alpah" in msg and "['Alpha', 'Beta']" in msg and 'Did you mean "Alpha"?' in msg


def test_accuracy_and_distance():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    y = torch.tensor([1, 1, 2, 1])
    top1, top2 = compute_accuracy((logits, None), y, topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == pytest.approx(50.0)
    assert top2.item() == pytest.approx(100.0)
    a, b = torch.randn(4, 5), torch.randn(3, 5)
    d = compute_distance_matrix(a, b)
    assert torch.allclose(d, torch.cdist(a, b) ** 2, atol=1e-5)
    c = compute_distance_matrix(a, b, "cosine")
    assert torch.allclose(
        c, 1 - torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=2), atol=1e-6
    )


def test_logger_tee_rotation_and_restore(tmp_path, capsys):
    out = tmp_path / "run"
    real = sys.stdout
    try:
        assert setup_logger(str(out)) == str(out / "log.txt")
        print("first run via print")
        get_logger("dassl.test").info("first via logging")
        # a second setup (tests call main() repeatedly) restores the previous tee first
        setup_logger(str(out))
        assert sys.stdout.console is real
        print("second run")
        get_logger("trainers.x").info("from another package")
        get_logger("trainers.x").debug("hidden")
    finally:
        close_logger()
    assert sys.stdout is real and not real.closed
    files = sorted(os.listdir(out))
    assert files[0] == "log.txt" and len(files) == 2 and files[1].startswith("log.txt-")
    assert (out / "log.txt").read_text() == "second run\nfrom another package\n"
    old = (out / files[1]).read_text()
    assert old == "first run via print\nfirst via logging\n"
    captured = capsys.readouterr().out
    assert "first via logging" in captured and "from another package" in captured


def test_logger_rank_nonzero_warnings_only(tmp_path, capsys):
    try:
        assert setup_logger(str(tmp_path / "r1"), rank=1) is None
        get_logger("dassl.test").info("quiet")
        get_logger("dassl.test").warning("loud")
        assert not (tmp_path / "r1").exists()
    finally:
        setup_logger(None)
    assert capsys.readouterr().out == "loud\n"
    assert logging.getLogger("dassl").level == logging.INFO
    explicit = tmp_path / "my.log"
    try:
        assert setup_logger(str(explicit)) == str(explicit)
        print("x")
    finally:
        close_logger()
    assert explicit.read_text() == "x\n"


def test_seed_and_env_info(monkeypatch):
    set_random_seed(3)
    a = (torch.rand(2), np.random.rand(), random.random())
    set_random_seed(3)
    assert torch.equal(a[0], torch.rand(2)) and a[1] == np.random.rand() and a[2] == random.random()

    def boom():
        raise RuntimeError("no nvidia-smi")

    import torch.utils.collect_env as ce

    monkeypatch.setattr(ce, "get_pretty_env_info", boom)
    info = collect_env_info()
    assert "no nvidia-smi" in info and "Pillow" in info
