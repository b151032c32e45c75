"""tools/plot_results.py figures and tools/download_teachers.py with a fake downloader."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools import download_teachers, plot_results


def write_result(run: Path, **values) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(json.dumps(values))


def assert_real_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not a blank/single-colour image


def test_bars_from_sweep_dir_and_json(tmp_path, capsys):
    for seed in (1, 2):
        write_result(tmp_path / "kd" / "EuroSAT" / f"seed{seed}", base=90.0 + seed, new=70.0)
        write_result(tmp_path / "kd" / "Caltech101" / f"seed{seed}", base=95.0, new=90.0 - seed)
    rows = [
        {"method": "CoOp", "dataset": "EuroSAT", "base": 92.2, "new": 54.7, "hm": 68.7},
        {"method": "CoOp", "dataset": "Average", "base": 92.2, "new": 54.7, "hm": 68.7},
    ]
    (tmp_path / "coop.json").write_text(json.dumps(rows))
    out = tmp_path / "fig" / "b2n.png"
    argv = [
        "bars",
        f"{tmp_path / 'kd'}=PromptKD",
        f"{tmp_path / 'coop.json'}=CoOp",
        "--paper",
        "-o",
        str(out),
    ]
    assert plot_results.main(argv) == 0
    assert_real_png(out)
    series = plot_results.load_input(f"{tmp_path / 'kd'}=mine")
    assert series[0][0] == "mine" and series[0][1] == "b2n"
    assert series[0][2]["EuroSAT"]["base"] == pytest.approx((91.5, 0.5))
    with pytest.raises(FileNotFoundError):
        plot_results.load_input(str(tmp_path / "missing"))


def test_curves_from_metrics_jsonl(tmp_path):
    run = tmp_path / "EuroSAT" / "seed1"
    run.mkdir(parents=True)
    lines = []
    for epoch in range(1, 5):
        lines.append(
            {
                "type": "train",
                "epoch": epoch,
                "losses": {"loss": 1.0 / epoch, "kd": 0.5 / epoch},
                "lr": 0.01,
            }
        )
        lines.append(
            {"type": "test", "split": "val", "epoch": epoch, "results": {"accuracy": 50 + epoch}}
        )
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"type": "train", "epo'  # killed mid-write
    (run / "metrics.jsonl").write_text(text)
    out = tmp_path / "curves.png"
    assert plot_results.main(["curves", str(tmp_path), "-o", str(out)]) == 0
    assert_real_png(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text('{"type": "other"}\n')
    assert plot_results.main(["curves", str(empty), "-o", str(tmp_path / "x.png")]) == 1


def fake_teacher_state(width: int = 1024) -> dict:
    return {
        "prompt_learner.ctx": torch.zeros(4, 8),
        "prompt_learner.token_prefix": torch.zeros(3, 1, 8),
        "image_encoder.VPT": torch.zeros(4, 8),
        "image_encoder.conv1.weight": torch.zeros(width, 3, 1, 1),
        "image_encoder.transformer.resblocks.1.VPT_shallow": torch.zeros(4, 8),
        "text_encoder.transformer.resblocks.1.VPT_shallow": torch.zeros(4, 8),
        "logit_scale": torch.tensor(4.6),
    }


def make_fake_downloader(bad_width: bool = False):
    """Imitates the Drive folder: two teachers in folders, one zipped, one unusable file."""

    calls = []

    def downloader(folder_id: str, output: Path) -> None:
        calls.append(folder_id)
        output.mkdir(parents=True, exist_ok=True)
        ckpt = {"state_dict": fake_teacher_state(), "epoch": 20, "optimizer": None}
        (output / "EuroSAT" / "VLPromptLearner").mkdir(parents=True)
        torch.save(ckpt, output / "EuroSAT" / "VLPromptLearner" / "model-best.pth.tar")
        staged = output / "tmp_xd.pth.tar"
        torch.save(ckpt, staged)
        with zipfile.ZipFile(output / "ImageNet-xd.zip", "w") as zf:
            zf.write(staged, "VLPromptLearner_large/model.pth.tar-20")
        staged.unlink()
        bad = {"state_dict": fake_teacher_state(width=768 if bad_width else 1024), "epoch": 20}
        (output / "dtd" / "VLPromptLearner").mkdir(parents=True)
        torch.save(bad, output / "dtd" / "VLPromptLearner" / "model-best.pth.tar")

    downloader.calls = calls
    return downloader


def test_download_teachers_with_fake_downloader(tmp_path, caplog):
    out = tmp_path / "teacher_model"
    fake = make_fake_downloader()
    assert download_teachers.main(["--out", str(out)], downloader=fake) == 0
    assert fake.calls == [download_teachers.DRIVE_FOLDER_ID]
    euro = out / "EuroSAT" / "VLPromptLearner" / "model-best.pth.tar"
    xd = out / "ImageNet-xd" / "VLPromptLearner_large" / "model.pth.tar-20"
    dtd = out / "DescribableTextures" / "VLPromptLearner" / "model-best.pth.tar"
    assert euro.is_file() and xd.is_file() and dtd.is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["teachers"]) == {"EuroSAT", "ImageNet-xd", "DescribableTextures"}
    assert manifest["teachers"]["EuroSAT"]["sha256"] == download_teachers.sha256_file(euro)
    assert manifest["teachers"]["EuroSAT"]["n_ctx"] == 4
    assert "ImageNet" in manifest["missing"] and "EuroSAT" not in manifest["missing"]
    assert "Baidu" in caplog.text and str(out / "ImageNet" / "VLPromptLearner") in caplog.text

    # A checkpoint of the wrong architecture is rejected (exit 1, listed as invalid).
    out2 = tmp_path / "other"
    assert download_teachers.main(["--out", str(out2)], downloader=make_fake_downloader(True)) == 1
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert any("vision width 768" in p for p in manifest["invalid"])

    # --skip-download verifies what is there without calling the downloader.
    never = make_fake_downloader()
    assert download_teachers.main(["--out", str(out), "--skip-download"], downloader=never) == 0
    assert never.calls == []


def test_zip_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="unsafe"):
        download_teachers.safe_extract(archive, tmp_path / "dest")


def test_missing_gdown_gives_install_hint(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gdown(name, *args, **kwargs):
        if name == "gdown":
            raise ImportError("No module named 'gdown'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gdown)
    with pytest.raises(RuntimeError, match="pip install gdown"):
        download_teachers.gdown_download_folder("x", tmp_path)
