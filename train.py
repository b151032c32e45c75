"""Entry point, flag-compatible with CoOp's train.py (``main(argv)`` is importable for tests).

Config: defaults -> ``trainers.extend_cfg`` -> ``--dataset-config-file`` -> ``--config-file`` ->
flags -> ``opts`` -> freeze. Written to the output directory: ``log.txt``, ``config.yaml`` (the
merged config) and ``run_info.json`` (argv, environment, seed, git commit, torch version).

Differences from upstream: ``--seed 0`` means seed 0 (P9); seeded runs keep cuDNN deterministic
(no ``cudnn.benchmark``); bad input (a :class:`dassl.utils.UserInputError`: missing file,
unknown key/trainer/dataset, wrong type, missing data root, ...) ends with one message on stderr
and exit status 2, and leaves no half-written output directory, while any other exception keeps
its traceback (also appended to ``log.txt``) and the directory. One run per output directory
(``.run.lock`` names the holder's pid and host; a stale lock is taken over with a warning).
Under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised before the trainer is
built (the ranks' configs must agree) and destroyed at exit.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import Any

import torch

import datasets  # noqa: F401  (registers the datasets)
import trainers  # registers the trainers; provides extend_cfg
from dassl.config import get_cfg_default, merge_cfg_file, merge_cfg_list
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.engine import distributed as dist_utils
from dassl.utils import (
    RunDirLock,
    RunDirLocked,
    UserInputError,
    atomic_write,
    collect_env_info,
    get_most_similar_str_to_a_from_b,
    set_random_seed,
    setup_logger,
    write_json,
)
from dassl.utils.logger import close_logger, get_logger, write_to_log_file

logger = get_logger("train")

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))


class UsageError(UserInputError):
    """Bad command-line input: reported as one line on stderr, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train or evaluate a prompt-learning trainer.")
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument(
        "--resume",
        type=str,
        default="",
        help="checkpoint directory (from which the training resumes)",
    )
    parser.add_argument(
        "--seed", type=int, default=-1, help="only non-negative value enables a fixed seed"
    )
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument(
        "--dataset-config-file",
        type=str,
        default="",
        help="path to config file for dataset setup",
    )
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir",
        type=str,
        default="",
        help="load model from this directory for eval-only mode",
    )
    parser.add_argument(
        "--load-epoch", type=int, help="load model weights at this epoch for evaluation"
    )
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="modify config options using the command-line",
    )
    return parser


def reset_cfg(cfg: Any, args: argparse.Namespace) -> None:
    """Apply the command-line flags to the config (after the YAML files, before opts)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:  # P9 fixed: --seed 0 means seed 0
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args: argparse.Namespace) -> Any:
    """Build the frozen config in the documented merge order (raises ConfigError)."""
    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    if args.dataset_config_file:
        merge_cfg_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_cfg_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    if args.opts:
        merge_cfg_list(cfg, args.opts)
    cfg.freeze()
    return cfg


def _choice_error(kind: str, flag: str, name: str, valid: Sequence[str]) -> UsageError:
    if not name:
        return UsageError(f"no {kind} given: pass {flag} (valid choices: {sorted(valid)})")
    closest = get_most_similar_str_to_a_from_b(name, valid)
    hint = f' Did you mean "{closest}"?' if closest else ""
    return UsageError(f'unknown {kind} "{name}" ({flag}); valid choices: {sorted(valid)}.{hint}')


def validate_cfg(cfg: Any, args: argparse.Namespace) -> None:
    """Reject impossible input before anything is written (raises UsageError)."""
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        raise _choice_error(
            "trainer", "--trainer", cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names()
        )
    if cfg.DATASET.NAME not in DATASET_REGISTRY:
        raise _choice_error(
            "dataset",
            "--dataset-config-file or DATASET.NAME",
            cfg.DATASET.NAME,
            DATASET_REGISTRY.registered_names(),
        )
    root = cfg.DATASET.ROOT
    if root and not os.path.isdir(os.path.expanduser(root)):
        raise UsageError(
            f'dataset root "{root}" (--root / DATASET.ROOT) does not exist or is not a '
            "directory; create it or point --root at the directory holding the datasets"
        )
    if args.eval_only and args.model_dir and not os.path.isdir(args.model_dir):
        raise UsageError(f'--model-dir "{args.model_dir}" does not exist or is not a directory')
    if args.load_epoch is not None and not args.eval_only:
        logger.warning("--load-epoch is only used with --eval-only; ignoring it")


@functools.lru_cache(maxsize=1)
def _env_info() -> str:
    return collect_env_info()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def write_run_files(cfg: Any, argv: Sequence[str]) -> None:
    """Write ``config.yaml`` and ``run_info.json`` atomically into the output directory."""
    out = cfg.OUTPUT_DIR
    with atomic_write(os.path.join(out, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    info = {
        "argv": list(argv),
        "command": " ".join([sys.executable, os.path.abspath(__file__), *argv]),
        "cwd": os.getcwd(),
        "seed": int(cfg.SEED),
        "git_commit": _git_commit(),
        "torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "world_size": dist_utils.get_world_size(),
        "start_time": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    write_json(info, os.path.join(out, "run_info.json"))


def print_args(args: argparse.Namespace, cfg: Any) -> None:
    logger.info("***************")
    logger.info("** Arguments **")
    logger.info("***************")
    for key in sorted(args.__dict__):
        logger.info(f"{key}: {args.__dict__[key]}")
    logger.info("************")
    logger.info("** Config **")
    logger.info("************")
    logger.info(str(cfg))


def check_output_dir(out_dir: str) -> None:
    """Create ``out_dir`` and make sure files can be created in it (raises UsageError)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write_test.")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UsageError(
            f'output directory "{out_dir}" (--output-dir / OUTPUT_DIR) is not writable '
            f"({e.strerror}): choose a writable directory or fix its permissions"
        ) from e


def _fail(msg: str) -> int:
    sys.stderr.write(f"train.py: error: {msg}\n")
    sys.stderr.flush()
    return 2


def _remove_new_output(out_dir: str, created_out: bool, rank: int) -> None:
    """Delete an output directory this run created, after a *user* error only."""
    if created_out and rank == 0:
        shutil.rmtree(out_dir, ignore_errors=True)


def run(args: argparse.Namespace, cfg: Any, progress: dict[str, bool]) -> int:
    """Build the trainer and train or evaluate (the part after the output dir is set up).

    ``progress["outputs"]`` turns True once results or checkpoints may have been written: from
    then on a user error keeps the directory (its files are complete, being written atomically).
    """
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model_for_eval(args.model_dir, epoch=args.load_epoch)
        progress["outputs"] = True
        trainer.test()
        return 0
    if not args.no_train:
        progress["outputs"] = True
        trainer.train()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run train.py with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Only a :class:`~dassl.utils.UserInputError` (bad file, key, flag: the message says what to
    fix) is reported as one line with exit status 2, removing an output directory this run
    created. Any other exception is a bug: it propagates with its traceback, which is also
    appended to ``log.txt``, and the output directory is left as it is.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse already printed its message (or --help)
        return int(e.code) if isinstance(e.code, int) else 2

    try:
        cfg = setup_cfg(args)
        validate_cfg(cfg, args)
    except UserInputError as e:
        return _fail(str(e))

    distributed = dist_utils.env_world_size() > 1
    if distributed:
        dist_utils.init_distributed()
    rank = dist_utils.get_rank()

    out_dir = cfg.OUTPUT_DIR
    created_out = not os.path.isdir(out_dir) or not os.listdir(out_dir)
    lock = RunDirLock(out_dir, warn=False)
    progress = {"outputs": False}
    try:
        if distributed:
            dist_utils.check_same_config(cfg.dump())
        if rank == 0:
            check_output_dir(out_dir)
            lock.acquire()
        dist_utils.barrier()
        setup_logger(out_dir, rank=rank)
        if lock.took_over:
            logger.warning(lock.took_over)

        if cfg.SEED >= 0:
            logger.info(f"Setting fixed seed: {cfg.SEED}")
            set_random_seed(cfg.SEED)
        elif torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True  # unseeded runs: speed over determinism

        print_args(args, cfg)
        if rank == 0:
            logger.info("Collecting env info ...")
            logger.info(f"** System info **\n{_env_info()}\n")
            write_run_files(cfg, argv)
        return run(args, cfg, progress)
    except UserInputError as e:
        logger.error(str(e))  # in log.txt too when the directory is kept
        close_logger()
        if not isinstance(e, RunDirLocked) and not progress["outputs"]:
            lock.release()
            _remove_new_output(out_dir, created_out, rank)
        return _fail(str(e))
    except BaseException:
        # A bug: keep the directory and its log; the traceback goes to log.txt and stderr.
        write_to_log_file("Traceback (a bug, not bad input):\n" + traceback.format_exc())
        raise
    finally:
        close_logger()
        lock.release()
        if distributed:
            dist_utils.cleanup()


if __name__ == "__main__":
    sys.exit(main())
