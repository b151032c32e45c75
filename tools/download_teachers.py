"""Fetch the released PromptKD ViT-L/14 teachers and lay them out where the scripts look.

The official README links three mirrors of the teachers: Baidu Yun, TeraBox and a Google
Drive folder that, for lack of space, holds only some of them. This tool downloads the Drive
folder with ``gdown`` (``pip install gdown``), unpacks any zip archives, checks every
checkpoint (restricted legacy loader, expected prompt keys), and moves each one into the
upstream layout that ``scripts/promptkd/base2novel.sh`` / ``xd.sh`` read::

    <out>/<Dataset>/VLPromptLearner/model-best.pth.tar           (base-to-novel, 11 datasets)
    <out>/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20     (cross-dataset / DG source)

``<Dataset>`` is the registry name (``DescribableTextures``, ``OxfordFlowers``, ...). A
``manifest.json`` in ``<out>`` records each file's SHA-256, size, source and checked keys.
Teachers the Drive folder lacks are listed with how to get them by hand (Baidu/TeraBox), then
``--skip-download`` verifies and records the files you placed yourself.

The student also needs the teacher's class vectors (``class_vectors.safetensors`` next to the
dataset directory); export them from each checkpoint with ``tools/export_class_vectors.py``.

Usage::

    python tools/download_teachers.py --out teacher_model
    python tools/download_teachers.py --out teacher_model --skip-download   # verify only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import paper_numbers  # noqa: E402

logger = logging.getLogger("download_teachers")

DRIVE_FOLDER_ID = "1OdQ9WauZmYAzVSUTTw7tIKKChyECIS5B"
BAIDU_URL = "https://pan.baidu.com/s/1KNJ1mhNKoxdSli4ZldeZUg?pwd=mjf4"
TERABOX_URL = "https://terabox.com/s/1X4mxJtSaR8W2lrK5bsrCkg"

B2N_DATASETS = paper_numbers.DATASETS_B2N
XD_DIR = "ImageNet-xd"
B2N_FILE = Path("VLPromptLearner") / "model-best.pth.tar"
XD_FILE = Path("VLPromptLearner_large") / "model.pth.tar-20"
# Keys every PromptSRC/IVLP teacher checkpoint (upstream CustomCLIP) must hold.
REQUIRED_KEYS = (
    "prompt_learner.ctx",
    "image_encoder.VPT",
    "image_encoder.conv1.weight",
    "image_encoder.transformer.resblocks.1.VPT_shallow",
    "text_encoder.transformer.resblocks.1.VPT_shallow",
    "logit_scale",
)
TEACHER_WIDTH = 1024  # ViT-L/14 vision width (conv1 output channels)

Downloader = Callable[[str, Path], None]


def gdown_download_folder(folder_id: str, output: Path) -> None:
    """Download a public Drive folder with gdown (imported lazily: an optional dependency)."""
    try:
        import gdown
    except ImportError as exc:
        raise RuntimeError(
            "gdown is needed to download from Google Drive: pip install gdown "
            "(or download by hand and rerun with --skip-download)"
        ) from exc
    output.mkdir(parents=True, exist_ok=True)
    files = gdown.download_folder(id=folder_id, output=str(output), quiet=False, use_cookies=False)
    if not files:
        raise RuntimeError(f"gdown downloaded nothing from Drive folder {folder_id}")


# The downloader used by main(); tests replace it with a fake (or pass downloader=...).
DOWNLOADER: Downloader = gdown_download_folder


def expected_path(out: Path, dataset_dir: str) -> Path:
    """Where the scripts look for the teacher of ``dataset_dir`` (registry name or ImageNet-xd)."""
    return out / dataset_dir / (XD_FILE if dataset_dir == XD_DIR else B2N_FILE)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def safe_extract(archive: Path, dest: Path) -> None:
    """Unzip refusing absolute paths and '..' (a zip must not write outside ``dest``)."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (dest / member).resolve()
            if target != dest and dest not in target.parents:
                raise ValueError(f"{archive}: unsafe member path {member!r}")
        zf.extractall(dest)


def identify(path: Path, root: Path) -> str | None:
    """The dataset directory a downloaded checkpoint belongs to, from its path components."""
    names = {n.lower(): n for n in B2N_DATASETS}
    names.update({"dtd": "DescribableTextures", "flowers102": "OxfordFlowers"})
    parts = [p.lower() for p in path.relative_to(root).parts[:-1]]
    for part in reversed(parts):
        stem = part[:-4] if part.endswith(".zip") else part
        if stem in (XD_DIR.lower(), "imagenet_xd", "imagenet-cross") or (
            stem.startswith("imagenet") and "xd" in stem
        ):
            return XD_DIR
        if stem in names:
            return names[stem]
    if "vlpromptlearner_large" in parts:
        return XD_DIR
    return None


def verify_checkpoint(path: Path) -> dict:
    """Load with the restricted legacy loader and check the teacher's prompt keys.

    Returns a summary for the manifest; raises ValueError naming what is wrong.
    """
    from dassl.utils import load_checkpoint

    ckpt = load_checkpoint(str(path), legacy=True)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no state_dict in the checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: not a PromptSRC ViT-L/14 teacher, missing keys {missing}")
    width = int(state["image_encoder.conv1.weight"].shape[0])
    if width != TEACHER_WIDTH:
        raise ValueError(f"{path}: vision width {width}, expected {TEACHER_WIDTH} (ViT-L/14)")
    depth = sum(
        1
        for k in state
        if k.startswith("image_encoder.transformer.resblocks.") and k.endswith(".VPT_shallow")
    )
    return {
        "epoch": ckpt.get("epoch"),
        "n_ctx": int(state["prompt_learner.ctx"].shape[0]),
        "vision_prompt_depth": depth + 1,
        "keys": len(state),
    }


def collect(staging: Path) -> dict[str, Path]:
    """Unpack archives under ``staging`` and map each dataset dir to its checkpoint file."""
    for archive in sorted(staging.rglob("*.zip")):
        dest = archive.with_suffix("")
        if not dest.exists():
            logger.info("unpacking %s", archive)
            safe_extract(archive, dest)
    found: dict[str, Path] = {}
    for path in sorted(staging.rglob("*")):
        if not path.is_file() or ".pth" not in path.name:
            continue
        dataset_dir = identify(path, staging)
        if dataset_dir is None:
            logger.warning("cannot tell which dataset %s belongs to; skipped", path)
            continue
        if dataset_dir in found and found[dataset_dir] != path:
            # Prefer the file named as the scripts expect (e.g. model-best over model.pth.tar-N).
            want = expected_path(staging, dataset_dir).name
            if found[dataset_dir].name == want or path.name != want:
                logger.warning("%s: keeping %s, ignoring %s", dataset_dir, found[dataset_dir], path)
                continue
        found[dataset_dir] = path
    return found


def manual_help(missing: Sequence[str], out: Path) -> str:
    lines = [
        f"{len(missing)} teacher(s) are not on the Google Drive mirror: {', '.join(missing)}.",
        f"Download them by hand from Baidu Yun ({BAIDU_URL}) or TeraBox ({TERABOX_URL}),",
        "unzip, and place each checkpoint at:",
    ]
    lines += [f"  {expected_path(out, d)}" for d in missing]
    lines.append("then run this tool again with --skip-download to verify and record them.")
    return "\n".join(lines)


def run(
    out: Path,
    staging: Path | None = None,
    skip_download: bool = False,
    folder_id: str = DRIVE_FOLDER_ID,
    downloader: Downloader | None = None,
) -> dict:
    """Download (unless skipped), verify, lay out and record the teachers; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    staging = staging or out / ".download"
    if not skip_download:
        (downloader or DOWNLOADER)(folder_id, staging)
        for dataset_dir, src in collect(staging).items():
            dst = expected_path(out, dataset_dir)
            if dst.exists():
                logger.info(
                    "%s: %s already present; downloaded copy left in %s", dataset_dir, dst, src
                )
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), dst)
            logger.info("%s -> %s", src, dst)

    manifest: dict = {
        "source": f"https://drive.google.com/drive/folders/{folder_id}",
        "teachers": {},
    }
    bad, missing = [], []
    for dataset_dir in (*B2N_DATASETS, XD_DIR):
        path = expected_path(out, dataset_dir)
        if not path.is_file():
            missing.append(dataset_dir)
            continue
        try:
            summary = verify_checkpoint(path)
        except Exception as exc:  # any load failure means the file is unusable
            bad.append(f"{dataset_dir}: {exc}")
            continue
        manifest["teachers"][dataset_dir] = {
            "path": os.path.relpath(path, out),
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            **summary,
        }
    manifest["missing"] = missing
    manifest["invalid"] = bad
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def main(argv: Sequence[str] | None = None, downloader: Downloader | None = None) -> int:
    """CLI; exit 1 when a checkpoint is invalid or the download failed (missing ones: 0)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("RELEASED_TEACHERS", "teacher_model"))
    )
    parser.add_argument("--staging", type=Path, help="download dir (default <out>/.download)")
    parser.add_argument("--folder-id", default=DRIVE_FOLDER_ID)
    parser.add_argument("--skip-download", action="store_true", help="only verify and record")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        manifest = run(args.out, args.staging, args.skip_download, args.folder_id, downloader)
    except (RuntimeError, OSError, ValueError, zipfile.BadZipFile) as exc:
        logger.error("%s", exc)
        return 1
    for dataset_dir, entry in manifest["teachers"].items():
        logger.info("ok %-20s %s sha256=%s", dataset_dir, entry["path"], entry["sha256"][:16])
    if manifest["missing"]:
        logger.warning("%s", manual_help(manifest["missing"], args.out))
    for problem in manifest["invalid"]:
        logger.error("invalid: %s", problem)
    logger.info("manifest: %s", args.out / "manifest.json")
    return 1 if manifest["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
