"""clip.load / clip._download: formats, errors naming the file, SHA256-verified downloads."""

import hashlib
import http.server
import os
import threading

import pytest
import torch
from PIL import Image

import clip
from clip import clip as clip_module
from clip.testing import (
    save_state_dict,
    save_torchscript,
    tiny_resnet_state_dict,
    tiny_vit_state_dict,
)


@pytest.fixture(scope="module")
def vit_sd():
    return tiny_vit_state_dict(layers=1, text_layers=1, vocab_size=49408)


def _inputs(res):
    torch.manual_seed(0)
    return torch.randn(2, 3, res, res), clip.tokenize(["a photo of a dog.", "a cat"])


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_state_dict_and_torchscript_load_to_identical_models(tmp_path, kind, vit_sd):
    sd = vit_sd if kind == "vit" else tiny_resnet_state_dict(layers=(1, 1, 1, 1))
    res = int(sd["input_resolution"])
    plain = save_state_dict(sd, tmp_path / "plain.pt")
    archive = save_torchscript(sd, tmp_path / "archive.pt")
    m1, pre1 = clip.load(plain)
    m2, pre2 = clip.load(archive)
    assert m1.dtype == torch.float32 == m2.dtype
    image, text = _inputs(res)
    with torch.no_grad():
        assert torch.equal(m1.encode_image(image), m2.encode_image(image))
        assert torch.equal(m1.encode_text(text), m2.encode_text(text))
    assert pre1.transforms[0].size == res == m1.visual.input_resolution
    # jit=True gives the archive itself, which agrees with the rebuilt fp16 model
    jit_model, pre3 = clip.load(archive, jit=True)
    assert isinstance(jit_model, torch.jit.ScriptModule)
    from clip.model import build_model

    fp16 = build_model(sd)
    with torch.no_grad():
        got, want = jit_model(image.half(), text)[0], fp16(image.half(), text)[0]
        torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-2)  # fp16 kernels
    # jit=True on a plain state dict falls back to jit=False
    m4, _ = clip.load(plain, jit=True)
    assert isinstance(m4, clip.model.CLIP)


def test_safetensors_and_design_details(tmp_path, vit_sd):
    from safetensors.torch import save_file

    path = str(tmp_path / "tiny.safetensors")
    save_file({k: v.contiguous() for k, v in vit_sd.items()}, path)
    details = {"trainer": "IVLP", "vision_depth": 1, "language_depth": 1, "vision_ctx": 2}
    model, _ = clip.load(path, design_details=details)
    assert model.visual.VPT.shape == (2, 64)


def test_preprocess_matches_clip_recipe(vit_sd, tmp_path):
    _, preprocess = clip.load(save_state_dict(vit_sd, tmp_path / "m.pt"))
    image = Image.new("L", (40, 20), color=255)  # grayscale, non-square
    out = preprocess(image)
    assert out.shape == (3, 16, 16)
    expected = (1 - torch.tensor(clip_module.CLIP_MEAN)) / torch.tensor(clip_module.CLIP_STD)
    torch.testing.assert_close(out[:, 8, 8], expected)


def test_unknown_name_lists_models():
    with pytest.raises(RuntimeError, match=r"ViT-B/16.*toy-teacher"):
        clip.load("ViT-Z/99")


def test_models_table():
    official = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64"]
    official += ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    assert clip.available_models() == official + ["toy-teacher", "toy-student"]
    for name in official:
        url = clip._MODELS[name]
        assert url.startswith("https://openaipublic.azureedge.net/clip/models/")
        assert clip_module._expected_sha256(url) is not None
        assert url.endswith(name.replace("/", "-").replace("@", "-") + ".pt")
    for name in ("toy-teacher", "toy-student"):
        assert clip._MODELS[name] == os.path.join(clip_module.WEIGHTS_DIR, name + ".pt")
        assert os.path.isabs(clip._MODELS[name])


def test_missing_shipped_toy_file_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_module, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="pretrain_toy_clip.py"):
        clip_module._download(str(tmp_path / "toy-teacher.pt"))
    existing = tmp_path / "x.pt"
    existing.write_bytes(b"x")
    assert clip_module._download(str(existing)) == str(existing)


def test_wrong_kind_truncated_and_incomplete_checkpoints(tmp_path, vit_sd):
    dassl = tmp_path / "model-best.pth.tar"
    torch.save({"state_dict": {"prompt_learner.ctx": torch.zeros(2)}, "epoch": 3}, dassl)
    with pytest.raises(RuntimeError, match=r"model-best\.pth\.tar.*training checkpoint"):
        clip.load(str(dassl))

    good = save_state_dict(vit_sd, tmp_path / "good.pt")
    data = open(good, "rb").read()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match=r"truncated\.pt.*truncated"):
        clip.load(str(truncated))

    archive = save_torchscript(vit_sd, tmp_path / "archive.pt")
    data = open(archive, "rb").read()
    cut = tmp_path / "cut_archive.pt"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(RuntimeError, match=r"cut_archive\.pt"):
        clip.load(str(cut))

    partial = {k: v for k, v in vit_sd.items() if k != "ln_final.bias"}
    path = save_state_dict(partial, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match=r"partial\.pt.*ln_final\.bias"):
        clip.load(path)

    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(RuntimeError, match=r"other\.pt.*visual\.proj"):
        clip.load(str(other))


# ----------------------------------------------------------------- downloads
class _Server:
    """Serves ``self.payload`` at any path; ``short`` sends fewer bytes than Content-Length."""

    def __init__(self):
        self.payload = b""
        self.short = False
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                body = outer.payload[: len(outer.payload) // 2] if outer.short else outer.payload
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, sha, name="tiny.pt"):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/clip/models/{sha}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def test_download_verifies_and_reuses_cache(tmp_path, server):
    server.payload = os.urandom(200_000)
    sha = hashlib.sha256(server.payload).hexdigest()
    path = clip_module._download(server.url(sha), str(tmp_path))
    assert path == str(tmp_path / "tiny.pt")
    assert open(path, "rb").read() == server.payload and server.requests == 1
    # good cached file: no network
    assert clip_module._download(server.url(sha), str(tmp_path)) == path
    assert server.requests == 1
    # $CLIP_CACHE is the default root
    os.environ["CLIP_CACHE"] = str(tmp_path / "env")
    try:
        assert clip_module._download(server.url(sha)).startswith(str(tmp_path / "env"))
    finally:
        del os.environ["CLIP_CACHE"]
    assert set(os.listdir(tmp_path)) == {"tiny.pt", "env"}  # no temporary files left


def test_download_replaces_corrupt_cached_file(tmp_path, server, caplog):
    server.payload = b"the real weights" * 1000
    sha = hashlib.sha256(server.payload).hexdigest()
    (tmp_path / "tiny.pt").write_bytes(b"garbage")
    path = clip_module._download(server.url(sha), str(tmp_path))
    assert open(path, "rb").read() == server.payload and server.requests == 1
    assert "does not match" in caplog.text


def test_download_hash_mismatch_leaves_no_file(tmp_path, server):
    server.payload = b"tampered" * 1000
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(RuntimeError, match="SHA256"):
        clip_module._download(server.url(wrong), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_download_interrupted_transfer_leaves_no_file(tmp_path, server):
    server.payload = os.urandom(100_000)
    server.short = True
    sha = hashlib.sha256(server.payload).hexdigest()
    with pytest.raises(RuntimeError, match="interrupted: received 50000 of 100000 bytes"):
        clip_module._download(server.url(sha), str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_load_by_name_downloads_then_builds(tmp_path, server, monkeypatch, vit_sd):
    path = save_state_dict(vit_sd, tmp_path / "src.pt")
    server.payload = open(path, "rb").read()
    sha = hashlib.sha256(server.payload).hexdigest()
    monkeypatch.setitem(clip_module._MODELS, "tiny-remote", server.url(sha))
    model, _ = clip.load("tiny-remote", download_root=str(tmp_path / "cache"))
    assert isinstance(model, clip.model.CLIP)
    assert os.path.isfile(tmp_path / "cache" / "tiny.pt")
