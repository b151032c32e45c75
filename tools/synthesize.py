"""Synthesize a surrogate image set for data-free distillation (importable: ``main(argv)``).

Example (the toy world, Mix-Prompt)::

    python tools/synthesize.py --dataset-config-file configs/datasets/toy_shapes.yaml \
        --config-file configs/datafree/toy.yaml --teacher toy-teacher --strategy mix \
        --output-dir output/datafree/toy/mix --grid output/datafree/toy/mix.png

Config: ``DATAFREE`` defaults (datafree/config.py) -> dataset YAML -> ``--config-file`` ->
flags -> ``KEY VALUE`` opts. Rerunning the same command finishes a killed run. Under
``torchrun --nproc_per_node N`` the batches are shared between the processes. Bad input ends
with one message on stderr and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dassl.config import merge_cfg_file, merge_cfg_list  # noqa: E402
from dassl.engine import distributed as dist_utils  # noqa: E402
from dassl.engine.precision import resolve_device  # noqa: E402
from dassl.utils import UserInputError, set_random_seed  # noqa: E402
from dassl.utils.logger import get_logger, setup_logger  # noqa: E402

logger = get_logger("tools.synthesize")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset-config-file", required=True, help="dataset YAML (class names)")
    p.add_argument("--config-file", default="", help="DATAFREE YAML (configs/datafree/*.yaml)")
    p.add_argument(
        "--root", default="", help="data root (only datasets whose classes live in a split file)"
    )
    p.add_argument("--output-dir", required=True, help="folder of the synthesized set")
    p.add_argument("--teacher", default="", help="CLIP name or path (DATAFREE.TEACHER)")
    p.add_argument("--teacher-run", default="", help="PromptKD teacher run (DATAFREE.TEACHER_RUN)")
    p.add_argument("--strategy", default="", help="none | mix | random | contrastive")
    p.add_argument("--generator", default="", help="fourier | vqgan")
    p.add_argument("--n-per-class", type=int, default=0, help="images per class")
    p.add_argument("--seed", type=int, default=None, help="DATAFREE.SEED")
    p.add_argument("--grid", default="", help="also write a PNG grid (classes x samples) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-cuda", action="store_true", help="stay on the CPU")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def build_cfg(args: argparse.Namespace):  # noqa: ANN201
    from datafree.config import get_datafree_cfg

    cfg = get_datafree_cfg()
    merge_cfg_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_cfg_file(cfg, args.config_file)
    flags = {
        "DATASET.ROOT": args.root,
        "DATAFREE.TEACHER": args.teacher,
        "DATAFREE.TEACHER_RUN": args.teacher_run,
        "DATAFREE.STRATEGY": args.strategy,
        "DATAFREE.GENERATOR.NAME": args.generator,
    }
    for key, value in flags.items():
        if value:
            merge_cfg_list(cfg, [key, repr(value)])
    if args.n_per_class:
        merge_cfg_list(cfg, ["DATAFREE.N_PER_CLASS", str(args.n_per_class)])
    if args.seed is not None:
        merge_cfg_list(cfg, ["DATAFREE.SEED", str(args.seed)])
    merge_cfg_list(cfg, args.opts)
    cfg.freeze()
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    distributed = dist_utils.env_world_size() > 1
    if distributed:
        dist_utils.init_distributed()
    setup_logger(None, rank=dist_utils.get_rank())
    try:
        from datafree.grid import write_grid
        from datafree.surrogate_set import synthesize_set

        cfg = build_cfg(args)
        set_random_seed(cfg.DATAFREE.SEED)
        device = resolve_device(not args.no_cuda)
        summary = synthesize_set(cfg, args.output_dir, device, progress=not args.no_progress)
        if args.grid and summary["complete"]:
            write_grid(args.grid, {cfg.DATAFREE.STRATEGY: args.output_dir})
            logger.info("Grid written to %s", args.grid)
    except UserInputError as err:  # bad input: one line, exit 2; anything else is a bug
        msg = err.args[0] if err.args else repr(err)
        sys.stderr.write(f"synthesize: error: {msg}\n")
        return 2
    finally:
        if distributed:
            dist_utils.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
