"""Student-distillation throughput, side by side in one run (PromptKD cost model).

Modes, each a training step of the same student (deep vision prompts + projector, SGD, the
official KD loss) on the same batch:

- ``A`` official-style: teacher prompts + teacher text encoder over all C classes, then the
  teacher image tower, every step (what upstream's ``CustomCLIP_teacher.forward`` does);
- ``B`` pre-stored class vectors (our default): teacher image tower only;
- ``C`` cached teacher outputs (``trainers/teacher_cache.py``): features read from a memory-mapped
  cache, no teacher forward;
- ``floor``: the student's forward/backward/step alone against fixed targets.

Also measured: inference images/s of the student vs the teacher image tower (with FLOPs per
image from ``torch.utils.flop_counter``), and the data pipeline alone (JPEG decode + random
resized crop + flip + normalise) in images/s per loader worker. ``--teacher-memory`` measures the
peak memory of one *teacher* training step (PromptSRC recipe: text prompts over all classes with
gradients) for several class counts, with and without activation checkpointing / class chunking.

Peak memory: on CPU the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` after glibc returned its free heap to the OS, so reused memory shows
as growth) of the mode's first step minus the resident set before it, plus the bytes of the
weights that mode needs; on CUDA ``torch.cuda.max_memory_allocated`` likewise. Random
weights, nothing downloaded. Examples::

    python tools/bench_distill.py --shapes small --quick --json bench_small.json
    python tools/bench_distill.py --shapes real --device cpu --json bench_real.json
    python tools/bench_distill.py --shapes real --teacher-memory --classes 8 16 32
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from clip.model import CLIP, VisionTransformer  # noqa: E402
from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.data_manager import DatasetWrapper  # noqa: E402
from dassl.data.datasets.base_dataset import Datum  # noqa: E402
from dassl.data.transforms import build_transform  # noqa: E402
from dassl.data.transforms.view_replay import ViewPipeline  # noqa: E402
from dassl.engine.precision import Precision, cast_frozen  # noqa: E402
from dassl.utils.logger import get_logger, setup_logger  # noqa: E402
from trainers.distillation import Distiller, KDLoss  # noqa: E402
from trainers.projector import build_projector  # noqa: E402
from trainers.promptkd_student import StudentCLIP  # noqa: E402
from trainers.promptkd_teacher import TeacherCLIP  # noqa: E402
from trainers.teacher_cache import (  # noqa: E402
    CacheSpec,
    TeacherCache,
    build_shards,
    items_sha256,
    prepare_cache_dir,
)

logger = get_logger("bench_distill")

MODES = ("A", "B", "C", "floor")


@dataclass(frozen=True)
class Tower:
    """A ViT image tower (+ optional text tower) in OpenAI CLIP terms."""

    resolution: int
    patch: int
    width: int
    layers: int
    embed_dim: int
    text_width: int = 0
    text_layers: int = 0


@dataclass(frozen=True)
class Shapes:
    name: str
    teacher: Tower
    student: Tower
    depth: int = 9  # IVLP prompt depth (vision and text), 4 tokens each: the paper's setting
    n_ctx: int = 4


SHAPES = {
    # Tiny pair with the real pair's proportions: teacher image tower ~4x the student's FLOPs,
    # a 77-token text tower over every class.
    "small": Shapes(
        "small",
        teacher=Tower(32, 4, 128, 2, 128, text_width=128, text_layers=2),
        student=Tower(32, 4, 64, 2, 64),
        depth=2,
    ),
    # ViT-L/14 teacher -> ViT-B/16 student at 224 px (OpenAI shapes).
    "real": Shapes(
        "real",
        teacher=Tower(224, 14, 1024, 24, 768, text_width=768, text_layers=12),
        student=Tower(224, 16, 768, 12, 512),
    ),
}


def _design(shapes: Shapes) -> dict[str, Any]:
    d, n = shapes.depth, shapes.n_ctx
    return {
        "trainer": "IVLP",
        "vision_depth": d,
        "language_depth": d,
        "vision_ctx": n,
        "language_ctx": n,
    }


def build_teacher(shapes: Shapes, num_classes: int, seed: int = 0) -> TeacherCLIP:
    """The prompted teacher CLIP (random weights) for ``num_classes`` synthetic class names."""
    t = shapes.teacher
    torch.manual_seed(seed)
    clip_model = CLIP(
        t.embed_dim,
        t.resolution,
        t.layers,
        t.width,
        t.patch,
        77,
        49408,
        t.text_width,
        t.text_width // 64,
        t.text_layers,
        design_details=_design(shapes),
    )
    names = [f"class {i}" for i in range(num_classes)]
    return TeacherCLIP(clip_model, names, shapes.n_ctx, "a photo of a").eval()


def build_student(shapes: Shapes, teacher_dim: int, seed: int = 1) -> StudentCLIP:
    s = shapes.student
    torch.manual_seed(seed)
    visual = VisionTransformer(
        s.resolution, s.patch, s.width, s.layers, s.width // 64, s.embed_dim, _design(shapes)
    )
    student = StudentCLIP(visual, build_projector("mlp", s.embed_dim, teacher_dim, 2), _scale())
    for name, p in student.named_parameters():
        p.requires_grad_("VPT" in name or name.startswith("VPT_image_trans."))
    return student


def _scale() -> nn.Parameter:
    return nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))


def param_bytes(*modules: nn.Module) -> int:
    seen, total = set(), 0
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


# ---------------------------------------------------------------------------- memory meter
class MemoryMeter:
    """Peak memory of a code region above what was resident when it started (bytes)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_peak_ok = device.type == "cpu" and _can_reset_peak()

    def __enter__(self) -> MemoryMeter:
        self.peak = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif self.cpu_peak_ok:
            _mmap_threshold(1 << 20)  # blocks >= 1 MB leave the resident set when freed
            _trim_heap()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = _proc_status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self.cpu_peak_ok:
            self.peak = _proc_status("VmHWM") - self._base
            _mmap_threshold(32 << 20)  # glibc's ceiling of its own dynamic threshold


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _proc_status("VmHWM")
        return True
    except OSError:
        return False


def _mmap_threshold(nbytes: int) -> None:
    """glibc: serve blocks of ``nbytes`` and more by mmap (returned to the OS on free).

    glibc raises this threshold by itself after large frees, after which freed activations stay
    in the heap and a later peak depends on fragmentation; the meter pins it low while it
    measures.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, int(nbytes))  # M_MMAP_THRESHOLD


def _trim_heap() -> None:
    """glibc: hand freed heap memory back to the OS so that reusing it shows up as growth."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ---------------------------------------------------------------------------- distillation
class Bench:
    """Models and steps of the four modes for one class count."""

    def __init__(
        self,
        shapes: Shapes,
        num_classes: int,
        batch: int,
        device: torch.device,
        prec: Precision,
        cache_dir: str,
        cache_items: int = 64,
    ):
        self.shapes, self.batch, self.device, self.prec = shapes, batch, device, prec
        self.teacher = build_teacher(shapes, num_classes)
        self.teacher.requires_grad_(False)
        self.teacher.to(prec.frozen_dtype).to(device)
        dim = shapes.teacher.embed_dim
        self.student = build_student(shapes, dim)
        cast_frozen(self.student, prec.frozen_dtype).to(device)
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optim = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=5e-4)
        self.kd = KDLoss(1.0, "official")
        self.scale = float(self.teacher.logit_scale.exp())
        with torch.no_grad(), prec.autocast():
            self.vectors = self.teacher.text_features().float()
        self.distiller = Distiller(self.teacher.image_encoder, self.vectors, self.scale, self.kd)
        gen = torch.Generator().manual_seed(0)
        res = shapes.student.resolution
        self.images = torch.randn(batch, 3, res, res, generator=gen).to(device)
        self.fixed_targets = torch.randn(batch, num_classes, generator=gen).to(device) * 5
        self.cache = _random_cache(cache_dir, shapes, dim, cache_items)
        self.cache_gen = torch.Generator().manual_seed(1)

    def mode_weights(self, mode: str) -> int:
        """Bytes of the weights a mode keeps resident."""
        if mode == "A":
            return param_bytes(self.teacher, self.student)
        if mode == "B":
            return param_bytes(self.teacher.image_encoder, self.student)
        return param_bytes(self.student)

    def teacher_logits(self, mode: str) -> torch.Tensor:
        if mode == "A":  # upstream: prompts + text encoder over all classes, every step
            with torch.no_grad(), self.prec.autocast():
                text = self.teacher.text_features()
                return self.teacher.logits(self.images, text).float()
        if mode == "B":
            with self.prec.autocast():
                return self.distiller.teacher_logits(self.images).float()
        if mode == "C":
            n = self.cache.spec.num_items
            idx = torch.randint(n, (self.batch,), generator=self.cache_gen)
            view = torch.randint(self.cache.spec.views, (self.batch,), generator=self.cache_gen)
            feats = self.cache.features(idx, view).to(self.device)
            return self.scale * feats @ self.vectors.t()
        return self.fixed_targets

    def step(self, mode: str) -> float:
        t_logits = self.teacher_logits(mode)
        with self.prec.autocast():
            feats = self.student(self.images)
        s_logits = self.student.logit_scale.exp().float() * feats @ self.vectors.t()
        loss = 1000.0 * self.kd(s_logits, t_logits.detach())
        self.optim.zero_grad(set_to_none=True)
        self.prec.backward_and_step(loss, [self.optim])
        return float(loss.detach())


def _random_cache(directory: str, shapes: Shapes, dim: int, n: int) -> TeacherCache:
    """A real cache (same reader, same files) of ``n`` images; random features stand in."""
    img_dir = os.path.join(directory, "images")
    os.makedirs(img_dir, exist_ok=True)
    items = []
    for i in range(n):
        path = os.path.join(img_dir, f"{i}.png")
        Image.new("RGB", (40, 30), (i * 3 % 255, 80, 160)).save(path)
        items.append(Datum(impath=path))
    res = shapes.student.resolution
    pipe = ViewPipeline((res, res), (0.08, 1.0))
    spec = CacheSpec(
        "bench",
        n,
        items_sha256([d.impath for d in items]),
        "random",
        "random",
        pipe.fingerprint(),
        views=4,
        seed=0,
        dim=dim,
        shard_items=16,
    )
    cache_dir = os.path.join(directory, "cache")
    prepare_cache_dir(cache_dir, spec, 100.0)
    gen = torch.Generator().manual_seed(2)

    def fake_teacher(images: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.randn(len(images), dim, generator=gen), dim=-1)

    build_shards(cache_dir, spec, items, pipe, fake_teacher, batch_size=64)
    return TeacherCache.open(cache_dir, spec)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_modes(
    bench: Bench, plan: dict[str, tuple[int, int]]
) -> dict[str, tuple[float, int | None]]:
    """``mode -> (images/s, peak bytes)``.

    Each mode's first warm-up step is the memory-measured one; the timed steps follow,
    interleaved across modes, and the fastest is kept: on a machine shared with other jobs it
    is the least disturbed estimate, and interleaving exposes every mode to the same load.
    """
    peaks: dict[str, int | None] = {}
    for mode, (_, warmup) in plan.items():
        meter = MemoryMeter(bench.device)
        with meter:
            bench.step(mode)
        peaks[mode] = None if meter.peak is None else meter.peak + bench.mode_weights(mode)
        for _ in range(warmup - 1):
            bench.step(mode)
    times: dict[str, list[float]] = {m: [] for m in plan}
    for r in range(max(steps for steps, _ in plan.values())):
        for mode, (steps, _) in plan.items():
            if r >= steps:
                continue
            _sync(bench.device)
            start = time.perf_counter()
            bench.step(mode)
            _sync(bench.device)
            times[mode].append(time.perf_counter() - start)
    return {mode: (bench.batch / min(times[mode]), peaks[mode]) for mode in plan}


# ---------------------------------------------------------------------------- inference
@torch.no_grad()
def inference_rate(tower: nn.Module, images: torch.Tensor, steps: int, prec: Precision) -> float:
    with prec.autocast():
        tower(images)
        _sync(images.device)
        start = time.perf_counter()
        for _ in range(steps):
            tower(images)
        _sync(images.device)
    return len(images) * steps / (time.perf_counter() - start)


def gflops_per_image(tower: nn.Module, images: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        tower(images[:1])
    return counter.get_total_flops() / 1e9


# ---------------------------------------------------------------------------- data pipeline
def pipeline_rate(directory: str, resolution: int, n: int, size: tuple[int, int]) -> float:
    """Images/s of one loader worker: JPEG decode + the PromptKD train transform."""
    rng = np.random.RandomState(0)
    items = []
    os.makedirs(directory, exist_ok=True)
    for i in range(min(n, 16)):
        arr = rng.randint(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        img = Image.fromarray(arr).resize(size, Image.BILINEAR)
        path = os.path.join(directory, f"{i}.jpg")
        img.save(path, quality=90)
        items.append(Datum(impath=path))
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (resolution, resolution)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    with contextlib.redirect_stdout(io.StringIO()):
        tfm = build_transform(cfg, is_train=True)
    data = DatasetWrapper(cfg, items, transform=tfm, is_train=True)
    data[0]
    start = time.perf_counter()
    for i in range(n):
        data[i % len(items)]
    return n / (time.perf_counter() - start)


# ---------------------------------------------------------------------------- teacher memory
def teacher_step_memory(
    shapes: Shapes,
    class_counts: Sequence[int],
    batch: int,
    device: torch.device,
    settings: Sequence[tuple[str, bool, int]],
) -> dict[str, dict[int, float]]:
    """Peak MB of one teacher training step for each ``(label, checkpointing, class_chunk)``."""
    from trainers.activation_memory import configure_teacher_memory

    out: dict[str, dict[int, float]] = {label: {} for label, _, _ in settings}
    res = shapes.teacher.resolution
    images = torch.randn(batch, 3, res, res).to(device)
    for c in class_counts:
        teacher = build_teacher(shapes, c).to(device)
        for name, p in teacher.named_parameters():
            p.requires_grad_(name.startswith("prompt_learner.") or "VPT" in name)
        labels = torch.arange(batch, device=device) % c
        weights = param_bytes(teacher)
        _teacher_step(
            teacher, images, labels
        )  # one-time allocations (autograd engine, kernel workspaces) stay out of the peaks
        for label, ckpt, chunk in settings:
            configure_teacher_memory(teacher, ckpt, ckpt, chunk)
            teacher.zero_grad(set_to_none=True)
            meter = MemoryMeter(device)
            with meter:
                _teacher_step(teacher, images, labels)
            peak = None if meter.peak is None else (meter.peak + weights) / 2**20
            out[label][c] = peak
            logger.info(f"teacher step, {c} classes, {label}: peak {_mb(peak)}")
        del teacher
    return out


def _teacher_step(teacher: TeacherCLIP, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Forward over all classes with gradients + backward (the memory-relevant part)."""
    teacher.zero_grad(set_to_none=True)
    F.cross_entropy(teacher(images), labels).backward()


# ---------------------------------------------------------------------------- driver
def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def machine_info(device: torch.device) -> dict[str, Any]:
    build = torch.__config__.show().splitlines()
    compiler = next((line.strip(" -") for line in build if "GCC" in line or "clang" in line), "")
    info = {
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_build": f"CUDA {torch.version.cuda}, MKL {torch.backends.mkl.is_available()}, "
        f"oneDNN {torch.backends.mkldnn.is_available()}, {compiler}",
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _plan(shapes: str, quick: bool, steps: int | None) -> dict[str, tuple[int, int]]:
    """``mode -> (timed steps, warm-up steps)``."""
    if shapes == "real":
        base = {"A": (1, 1), "B": (2, 1), "C": (2, 1), "floor": (2, 1)}
    elif quick:
        base = {"A": (3, 1), "B": (30, 2), "C": (100, 3), "floor": (100, 3)}
    else:
        base = {"A": (5, 1), "B": (20, 3), "C": (30, 3), "floor": (30, 3)}
    if steps:
        base = {m: (max(1, steps), w) for m, (_, w) in base.items()}
    return base


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available (use --device cpu)")
    prec = Precision.from_name(args.prec or ("bf16" if device.type == "cuda" else "fp32"), device)
    # Random weights drive some gradients into the subnormal range, where x86 arithmetic is
    # ~100x slower: a property of the random data that would make the timings data-dependent.
    torch.set_flush_denormal(True)
    shapes = SHAPES[args.shapes]
    plan = _plan(args.shapes, args.quick, args.steps)
    info = machine_info(device)
    logger.info(f"Machine: {info}")
    logger.info(f"Shapes {shapes.name}: {shapes}; batch {args.batch}; precision {prec.name}")
    report: dict[str, Any] = {
        "device": str(device),
        "shapes": shapes.name,
        "batch": args.batch,
        "precision": prec.name,
        "machine": info,
        "steps": {m: s for m, (s, _) in plan.items()},
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for c in [] if args.no_distill else args.classes:
            bench = Bench(shapes, c, args.batch, device, prec, os.path.join(tmp, f"c{c}"))
            row: dict[str, Any] = {"peak_mb": {}}
            for mode, (rate, peak) in time_modes(bench, plan).items():
                row[mode] = rate
                row["peak_mb"][mode] = None if peak is None else peak / 2**20
                logger.info(f"C={c} {mode:>5}: {rate:8.2f} img/s, peak {_mb(row['peak_mb'][mode])}")
            row["B/A"] = row["B"] / row["A"]
            row["C/B"] = row["C"] / row["B"]
            row["floor/C"] = row["floor"] / row["C"]
            report["results"][f"C{c}"] = row
            if not args.no_extras and c == args.classes[-1]:
                report["inference"] = _inference(bench, args, prec)
            del bench
        if not (args.no_extras or args.no_distill):
            res = shapes.student.resolution
            size = (500, 375) if shapes.name == "real" else (64, 48)
            n = 40 if args.quick or shapes.name == "real" else 200
            report["pipeline_img_s_per_worker"] = pipeline_rate(
                os.path.join(tmp, "jpeg"), res, n, size
            )
    if args.teacher_memory:
        report["teacher_memory_mb"] = teacher_memory_report(args, shapes, device)
    log_table(report)
    return report


def _inference(bench: Bench, args: argparse.Namespace, prec: Precision) -> dict[str, float]:
    steps = 2 if args.shapes == "real" else 10
    images = bench.images
    student_rate = inference_rate(bench.student.image_encoder, images, steps, prec)
    teacher_rate = inference_rate(bench.teacher.image_encoder, images, steps, prec)
    out = {
        "student_img_s": student_rate,
        "teacher_img_s": teacher_rate,
        "student_gflops": gflops_per_image(bench.student.image_encoder, images),
        "teacher_gflops": gflops_per_image(bench.teacher.image_encoder, images),
    }
    logger.info(f"Inference: {out}")
    return out


def teacher_memory_report(
    args: argparse.Namespace, shapes: Shapes, device: torch.device
) -> dict[str, Any]:
    settings = [
        ("plain", False, 0),
        ("checkpointing", True, 0),
        (f"checkpointing+chunk{args.class_chunk}", True, args.class_chunk),
    ]
    counts = args.memory_classes
    result = teacher_step_memory(shapes, counts, args.memory_batch, device, settings)
    report: dict[str, Any] = {
        "batch": args.memory_batch,
        "classes": list(counts),
        "peak_mb": result,
    }
    target = args.extrapolate_classes
    if len(counts) >= 2 and all(v is not None for row in result.values() for v in row.values()):
        fits = {
            label: linear_fit(counts, [row[c] for c in counts]) for label, row in result.items()
        }
        report["mb_per_class"] = {label: slope for label, (slope, _) in fits.items()}
        report["extrapolated"] = {
            "classes": target,
            "peak_mb": {label: slope * target + icpt for label, (slope, icpt) in fits.items()},
        }
    return report


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``ys`` over ``xs``."""
    slope, icpt = np.polyfit(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), 1)
    return float(slope), float(icpt)


def log_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    lines = [
        f"PromptKD student distillation, shapes={report['shapes']}, batch {report['batch']}, "
        f"{report['precision']}, {m['device']} ({m['cpu']}, {m['cpu_count']} CPUs, "
        f"{m['torch_threads']} torch threads), torch {m['torch']}, {m['date']}",
    ]
    if report["results"]:
        lines += [
            "| C | A img/s | B img/s | C img/s | floor img/s | B/A | C/B | floor/C | peak MB A/B/C/floor |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for key, r in report["results"].items():
        peaks = "/".join(
            "n/a" if r["peak_mb"][k] is None else f"{r['peak_mb'][k]:.0f}" for k in MODES
        )
        lines.append(
            f"| {key[1:]} | {r['A']:.2f} | {r['B']:.2f} | {r['C']:.2f} | {r['floor']:.2f} | "
            f"x{r['B/A']:.1f} | x{r['C/B']:.2f} | x{r['floor/C']:.2f} | {peaks} |"
        )
    if "inference" in report:
        i = report["inference"]
        lines.append(
            f"Inference (image tower, batch {report['batch']}): student {i['student_img_s']:.1f} "
            f"img/s ({i['student_gflops']:.2f} GFLOPs/img) vs teacher {i['teacher_img_s']:.1f} img/s "
            f"({i['teacher_gflops']:.2f} GFLOPs/img): x{i['student_img_s'] / i['teacher_img_s']:.1f}"
        )
    if "pipeline_img_s_per_worker" in report:
        lines.append(
            f"Data pipeline (decode + RRC + flip + normalise): "
            f"{report['pipeline_img_s_per_worker']:.1f} img/s per worker"
        )
    if "teacher_memory_mb" in report:
        tm = report["teacher_memory_mb"]
        lines.append(f"Teacher step peak memory (MB), batch {tm['batch']}:")
        lines.append("| setting | " + " | ".join(f"C={c}" for c in tm["classes"]) + " |")
        lines.append("|---|" + "---|" * len(tm["classes"]))
        ext = tm.get("extrapolated")
        if ext:
            lines[-2] += f" MB/class | extrapolated to C={ext['classes']} |"
            lines[-1] += "---|---|"
        for label, row in tm["peak_mb"].items():
            cells = " | ".join(_mb(row.get(c)).replace(" MB", "") for c in tm["classes"])
            if ext:
                cells += f" | {tm['mb_per_class'][label]:.1f} | ~{ext['peak_mb'][label]:,.0f}"
            lines.append(f"| {label} | {cells} |")
    logger.info("\n" + "\n".join(lines))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", choices=sorted(SHAPES), default="small")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--prec", choices=("fp32", "fp16", "amp", "bf16"), default=None,
                   help="default: fp32 on CPU, bf16 on CUDA")  # fmt: skip
    p.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--quick", action="store_true", help="fewer steps (small shapes: < 1 min on CPU)"
    )
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode (overrides)")
    p.add_argument("--no-extras", action="store_true", help="skip inference and data pipeline")
    p.add_argument("--no-distill", action="store_true", help="skip the A/B/C/floor modes")
    p.add_argument("--teacher-memory", action="store_true",
                   help="also measure one teacher step's peak memory per class count")  # fmt: skip
    p.add_argument("--memory-classes", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--memory-batch", type=int, default=4)
    p.add_argument("--class-chunk", type=int, default=8)
    p.add_argument("--extrapolate-classes", type=int, default=500,
                   help="linear extrapolation target of the teacher memory curves")  # fmt: skip
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--json", default="", help="write the results as JSON to this path")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_logger(None)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = run(args)
    if args.json:
        from dassl.utils.tools import atomic_write

        with atomic_write(args.json) as f:
            json.dump(report, f, indent=2)
        logger.info(f"Results written to {args.json}")
    return report


if __name__ == "__main__":
    main()
