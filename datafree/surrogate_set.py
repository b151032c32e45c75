"""The synthesized (surrogate) dataset on disk, and the resumable, sharded run that fills it.

Layout of an output folder (one strategy)::

    <out>/images/<class_dir>/<n:05d>.png   8-bit RGB, class_dir = class name with "_" for " "/"/"
    <out>/split_datafree.json              CoOp split: {"train": [[relpath, label, classname]],
                                           "val": [], "test": [], "classnames": [...]}
    <out>/metadata.json                    header + one record per image (class, strategy, style,
                                           seed, steps, final loss, teacher probability/prediction)
    <out>/synthesis.json                   the settings the folder was made with (checked on resume)
    <out>/styles.safetensors               learnt Contrastive-Prompt styles (that strategy only)
    <out>/.batches/<b:05d>.json            per-batch records (resume state)

Every file is written atomically. Batch b's PNGs are written before its record file, so a
killed run leaves only whole batches recorded; a rerun skips recorded batches and recomputes the
others with the same seeds. ``split_datafree.json`` and ``metadata.json`` appear only when every
batch is recorded, so a folder with them is complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from dassl.config import to_plain
from dassl.engine import distributed as dist_utils
from dassl.utils import InputFileNotFoundError, InvalidInputError, read_json
from dassl.utils.logger import get_logger

from .classnames import ClassListError, check_same_classes, dataset_classnames, read_classnames_file
from .generators import GENERATOR_REGISTRY, build_generator
from .styles import STRATEGY_REGISTRY, build_strategy
from .synthesis import (
    Cutouts,
    Progress,
    Synthesizer,
    image_seed,
    plan_batches,
    plan_items,
    save_png,
    shard,
    write_json_atomic,
)
from .teacher import load_teacher

__all__ = [
    "FORMAT_VERSION",
    "IMAGES_DIR",
    "SPLIT_FILE",
    "METADATA_FILE",
    "SETTINGS_FILE",
    "STYLES_FILE",
    "class_dirname",
    "resolve_classnames",
    "check_datafree_cfg",
    "synthesize_set",
    "read_surrogate_set",
    "is_complete",
]

logger = get_logger(__name__)

FORMAT_VERSION = 1
IMAGES_DIR = "images"
SPLIT_FILE = "split_datafree.json"
METADATA_FILE = "metadata.json"
SETTINGS_FILE = "synthesis.json"
STYLES_FILE = "styles.safetensors"
BATCH_DIR = ".batches"


def class_dirname(classname: str) -> str:
    return classname.replace(" ", "_").replace("/", "_")


def resolve_classnames(cfg: Any) -> list[str]:
    """The dataset's class names; a ``CLASSNAMES_FILE`` must list the same classes."""
    names = dataset_classnames(cfg)
    path = cfg.DATAFREE.CLASSNAMES_FILE
    if path:
        check_same_classes(names, read_classnames_file(path), path, cfg.DATASET.NAME)
    dirs = [class_dirname(c) for c in names]
    if len(set(dirs)) != len(dirs):
        raise ClassListError(f"class names of {cfg.DATASET.NAME} collide as folder names")
    return names


def check_datafree_cfg(cfg: Any) -> None:
    """Reject unknown names and missing files before any heavy work."""
    node = cfg.DATAFREE
    if node.STRATEGY not in STRATEGY_REGISTRY:
        raise InvalidInputError(
            f"Unknown DATAFREE.STRATEGY {node.STRATEGY!r}; choose one of "
            f"{STRATEGY_REGISTRY.registered_names()}"
        )
    if node.GENERATOR.NAME not in GENERATOR_REGISTRY:
        raise InvalidInputError(
            f"Unknown DATAFREE.GENERATOR.NAME {node.GENERATOR.NAME!r}; choose one of "
            f"{GENERATOR_REGISTRY.registered_names()}"
        )
    if node.GENERATOR.NAME == "vqgan":
        for key in ("CONFIG", "CHECKPOINT"):
            path = node.GENERATOR.VQGAN[key]
            if not path or not os.path.isfile(path):
                raise InputFileNotFoundError(
                    f"DATAFREE.GENERATOR.VQGAN.{key} not found: {path!r} (the vqgan generator "
                    "needs a taming model .yaml and its .ckpt)"
                )
    if node.TEACHER_RUN and not os.path.exists(node.TEACHER_RUN):
        raise InputFileNotFoundError(f"DATAFREE.TEACHER_RUN not found: {node.TEACHER_RUN}")
    if node.CLASS_VECTORS and not os.path.isfile(node.CLASS_VECTORS):
        raise InputFileNotFoundError(f"DATAFREE.CLASS_VECTORS not found: {node.CLASS_VECTORS}")
    if node.N_PER_CLASS < 1:
        raise InvalidInputError(f"DATAFREE.N_PER_CLASS must be >= 1, got {node.N_PER_CLASS}")


def _settings(cfg: Any, classnames: Sequence[str]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "dataset": cfg.DATASET.NAME,
        "classnames": list(classnames),
        "datafree": to_plain(cfg.DATAFREE),
    }


def is_complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, METADATA_FILE)) and os.path.isfile(
        os.path.join(folder, SPLIT_FILE)
    )


def read_surrogate_set(folder: str) -> dict[str, Any]:
    """The metadata of a complete folder (records carry absolute ``impath``)."""
    if not is_complete(folder):
        raise InputFileNotFoundError(
            f"{folder} is not a complete synthesized set (no {METADATA_FILE}/{SPLIT_FILE}); run "
            "tools/synthesize.py (again) to finish it"
        )
    meta = read_json(os.path.join(folder, METADATA_FILE))
    for rec in meta["images"]:
        rec["impath"] = os.path.join(folder, rec["path"])
    return meta


def _finalize(folder: str, settings: dict[str, Any], num_batches: int, teacher_info: dict) -> bool:
    records = []
    for b in range(num_batches):
        path = os.path.join(folder, BATCH_DIR, f"{b:05d}.json")
        if not os.path.isfile(path):
            logger.warning("batch %d of %d is missing; rerun to finish %s", b, num_batches, folder)
            return False
        records.extend(read_json(path))
    records.sort(key=lambda r: r["index"])
    names = settings["classnames"]
    node = settings["datafree"]
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": settings["dataset"],
        "classnames": names,
        "strategy": node["STRATEGY"],
        "generator": node["GENERATOR"]["NAME"],
        "n_per_class": node["N_PER_CLASS"],
        **teacher_info,
        "images": records,
    }
    prefix = IMAGES_DIR + "/"
    train = [[r["path"][len(prefix) :], r["label"], r["class"]] for r in records]
    write_json_atomic(os.path.join(folder, METADATA_FILE), meta)
    write_json_atomic(
        os.path.join(folder, SPLIT_FILE),
        {"train": train, "val": [], "test": [], "classnames": names},
    )
    return True


def synthesize_set(
    cfg: Any, output_dir: str, device: torch.device | str = "cpu", progress: bool = True
) -> dict[str, Any]:
    """Synthesize (or finish) the set of ``cfg.DATAFREE`` into ``output_dir``.

    Under torchrun each rank does its share of batches; rank 0 writes the final files. Returns
    a summary (images done in this call, seconds, complete or not).
    """
    node = cfg.DATAFREE
    check_datafree_cfg(cfg)
    classnames = resolve_classnames(cfg)
    settings = _settings(cfg, classnames)
    settings_path = os.path.join(output_dir, SETTINGS_FILE)
    if os.path.isfile(settings_path) and read_json(settings_path) != settings:
        raise InvalidInputError(
            f"{output_dir} holds a synthesis made with other settings ({settings_path}); use "
            "another output directory or delete it"
        )
    teacher = load_teacher(
        node.TEACHER,
        classnames,
        plain_template=node.PLAIN_TEMPLATE,
        run=node.TEACHER_RUN,
        class_vectors=node.CLASS_VECTORS,
        dataset=cfg.DATASET.NAME,
        device=device,
    )
    size = node.GENERATOR.SIZE or teacher.resolution
    generator = build_generator(node.GENERATOR, size).to(device)
    aug = node.AUG
    cutouts = Cutouts(
        aug.CUTOUTS,
        teacher.resolution,
        aug.SCALE,
        aug.FLIP,
        aug.DEGREES,
        aug.TRANSLATE,
        aug.NOISE_STD,
    )
    synth = Synthesizer(
        teacher,
        generator,
        cutouts,
        node.OPTIM.STEPS,
        node.OPTIM.LR,
        node.LOSS.MATCH,
        node.LOSS.TV_WEIGHT,
        node.LOSS.RANGE_WEIGHT,
        node.LOSS.CE_WEIGHT,
    )
    rank, world = dist_utils.get_rank(), dist_utils.get_world_size()
    main = rank == 0
    styles_path = node.CONTRASTIVE.STYLES_FILE or os.path.join(output_dir, STYLES_FILE)
    # rank 0 learns the contrastive styles (if needed); the others then read its file
    if not main:
        dist_utils.barrier()
    os.makedirs(output_dir, exist_ok=True)
    if main:
        write_json_atomic(settings_path, settings)
    strategy = build_strategy(node, teacher.clip_model, classnames, styles_path)
    if main:
        dist_utils.barrier()

    items = plan_items(len(classnames), node.N_PER_CLASS)
    batches = plan_batches(items, node.BATCH_SIZE)
    dirs = [class_dirname(c) for c in classnames]
    batch_dir = os.path.join(output_dir, BATCH_DIR)
    mine = shard(len(batches), rank, world)
    todo = [b for b in mine if not os.path.isfile(os.path.join(batch_dir, f"{b:05d}.json"))]
    n_todo = sum(len(batches[b]) for b in todo)
    logger.info(
        "%s: strategy %s, generator %s, %d classes x %d = %d images; %d batches of %d on %d "
        "process(es); %d images to do here (%d already done)",
        output_dir,
        node.STRATEGY,
        node.GENERATOR.NAME,
        len(classnames),
        node.N_PER_CLASS,
        len(items),
        len(batches),
        node.BATCH_SIZE,
        world,
        n_todo,
        sum(len(batches[b]) for b in mine) - n_todo,
    )
    bar = Progress(n_todo, enabled=progress and main)
    cpu_start = time.process_time()
    for b in todo:
        batch = batches[b]
        labels = torch.tensor([it.label for it in batch])
        seeds = [image_seed(node.SEED, it.index) for it in batch]
        text, styles = strategy.features(
            labels, [image_seed(node.SEED, it.index, 1) for it in batch]
        )
        result = synth.run(text, labels, seeds, batch_seed=image_seed(node.SEED, b, 2))
        records = []
        for j, it in enumerate(batch):
            rel = f"{IMAGES_DIR}/{it.relpath(dirs)}"
            save_png(os.path.join(output_dir, rel), result.images[j])
            records.append(
                {
                    "index": it.index,
                    "path": rel,
                    "label": it.label,
                    "class": classnames[it.label],
                    "strategy": node.STRATEGY,
                    "style": styles[j],
                    "seed": seeds[j],
                    "steps": node.OPTIM.STEPS,
                    "loss": round(result.losses[j], 6),
                    "teacher_prob": round(result.probs[j], 6),
                    "teacher_pred": result.preds[j],
                }
            )
        write_json_atomic(os.path.join(batch_dir, f"{b:05d}.json"), records)
        bar.update(len(batch))
    bar.close()
    seconds = time.time() - bar.start
    cpu_seconds = time.process_time() - cpu_start
    dist_utils.barrier()
    complete = False
    if main:
        complete = _finalize(
            output_dir,
            settings,
            len(batches),
            {"teacher": node.TEACHER, "teacher_run": node.TEACHER_RUN},
        )
        logger.info(
            "%d images in %.1f s (%.2f images/s; %.1f s of CPU time in this process)%s",
            n_todo,
            seconds,
            n_todo / max(seconds, 1e-9),
            cpu_seconds,
            "; set complete" if complete else "",
        )
    return {
        "images": n_todo,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "complete": complete,
        "output": output_dir,
    }
