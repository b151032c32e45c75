"""Trainer life cycle with upstream Dassl's public methods (spec section 2).

``TrainerBase`` keeps the model registry and the train loop; the details live in small helpers:
:mod:`.precision` (fp32/fp16/amp/bf16 backward and step), :mod:`.checkpointer` (save, resume
with RNG state, load), :mod:`.evaluation` (the one evaluation loop and its subsets),
:mod:`.results` (results.json), :mod:`.metric_writer` (TensorBoard + metrics.jsonl) and
:mod:`.distributed` (ranks, gathering). Upstream trainer files (CoOp style) subclass
``TrainerX`` unchanged.

What a trainer writes (see docs/EXTENDING.md): ``config_defaults`` (its config keys),
``build_model`` (register the trainable modules), ``forward_backward`` (one step, returning
named losses) and, to be evaluated on classes other than those it was built for,
``classifier_for(subset)`` (a function images -> logits over ``subset.classnames``). The engine
steps the LR schedulers (once per epoch, or per iteration when a scheduler has
``interval = "iter"``), wraps ``self.model`` in DDP on first use of ``self.model_ddp``, runs
validation and the final base/new, per-domain or all-class evaluation, and writes results.json.
"""

from __future__ import annotations

import datetime
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DistributedSampler

from dassl.data import DataManager
from dassl.data.data_manager import build_data_loader
from dassl.evaluation import build_evaluator
from dassl.utils import AverageMeter, MetricMeter, UserInputError, mkdir_if_missing, tolist_if_not
from dassl.utils.logger import get_logger

from . import checkpointer
from . import distributed as dist_utils
from .build import add_config_defaults
from .evaluation import EvalSubset, eval_subsets, run_evaluation
from .metric_writer import MetricWriter
from .precision import Precision, resolve_device
from .results import harmonic_mean, write_results

__all__ = [
    "CLASSNAME_BUFFERS",
    "SimpleNet",
    "TrainerBase",
    "SimpleTrainer",
    "TrainerX",
    "TrainerXU",
    "NonFiniteLossError",
    "scheduler_interval",
]

logger = get_logger(__name__)

# Buffers that embed the class names a prompt learner was built for (upstream names). Loading a
# checkpoint keeps the model's own: evaluating on other classes (new ones) rebuilds them.
CLASSNAME_BUFFERS = ("token_prefix", "token_suffix", "token_prefix2", "token_suffix2")


def scheduler_interval(sched: Any) -> str:
    """``"iter"`` when a scheduler declares per-iteration stepping, else ``"epoch"``."""
    interval = getattr(sched, "interval", "epoch")
    if interval not in ("epoch", "iter"):
        raise ValueError(f'scheduler.interval must be "epoch" or "iter", got {interval!r}')
    return interval


class NonFiniteLossError(FloatingPointError, UserInputError):
    """Training diverged (NaN/inf loss or gradient); the message lists the likely causes."""


class _SkipStep(Exception):
    """Internal: abandon this optimizer step (TRAIN.NONFINITE skip)."""


class SimpleNet(nn.Module):
    """A backbone followed by a linear classifier (upstream's default model, minimal form).

    No backbone zoo is shipped (prompt trainers never use one), so the backbone module and its
    output dimension are passed in explicitly.
    """

    def __init__(
        self,
        cfg: Any = None,
        model_cfg: Any = None,
        num_classes: int = 0,
        backbone: nn.Module | None = None,
        fdim: int | None = None,
    ):
        super().__init__()
        if backbone is None or fdim is None:
            raise NotImplementedError(
                "SimpleNet needs an explicit backbone module and its feature size (fdim): this "
                "package ships no backbone registry. Override build_model() in your trainer."
            )
        self.backbone = backbone
        self._fdim = fdim
        self.classifier = nn.Linear(fdim, num_classes) if num_classes > 0 else None

    @property
    def fdim(self) -> int:
        return self._fdim

    def forward(self, x: torch.Tensor, return_feature: bool = False) -> Any:
        f = self.backbone(x)
        if self.classifier is None:
            return f
        y = self.classifier(f)
        return (y, f) if return_feature else y


class TrainerBase:
    """Model registry, optimisation helpers and the epoch loop shared by all trainers."""

    #: Config keys this trainer reads, with defaults: ``{"TRAINER.MINE": {"N_CTX": 4}}`` (a
    #: node and its keys) or ``{"TRAINER.MODAL": "base2novel"}`` (one key). Added to the config
    #: by ``add_config`` for every registered trainer before any YAML is merged.
    config_defaults: dict[str, Any] = {}

    @classmethod
    def add_config(cls, cfg: Any) -> Any:
        """Add this trainer's keys (``config_defaults``); never overwrites an existing key."""
        return add_config_defaults(cfg, cls.config_defaults)

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer: MetricWriter | None = None
        self._ddp_param_ids: set[int] = set()
        self._lr_stepped: set[str] = set()
        self.precision = Precision.from_name("fp32", "cpu")
        self.best_result = -float("inf")
        self._resume: dict[str, Any] = {}  # a mid-epoch checkpoint's batch count and RNG state
        self._epoch_gen_state: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- model registry

    def register_model(
        self,
        name: str = "model",
        model: nn.Module | None = None,
        optim: Any = None,
        sched: Any = None,
    ) -> None:
        """Register a module with its optimizer and scheduler (saved, resumed, stepped)."""
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if self.__dict__.get("_optims") is None:
            raise AttributeError("Cannot assign optim before super().__init__() call")
        if self.__dict__.get("_scheds") is None:
            raise AttributeError("Cannot assign sched before super().__init__() call")
        if name in self._models:
            raise KeyError(f'Model "{name}" is already registered; use a different name')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched
        if isinstance(model, nn.parallel.DistributedDataParallel):
            self._ddp_param_ids.update(id(p) for p in model.parameters())

    def get_model_names(self, names: str | list[str] | None = None) -> list[str]:
        """All registered names, or the validated subset ``names`` (a str is accepted)."""
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            if name not in names_real:
                raise KeyError(f'Model "{name}" is not registered; registered: {names_real}')
        return names

    def wrap_ddp(self, module: nn.Module) -> nn.Module:
        """``DistributedDataParallel(module)`` when running distributed, else ``module``."""
        if dist_utils.get_world_size() <= 1:
            return module
        device_ids = None
        if next(module.parameters()).device.type == "cuda":
            device_ids = [torch.cuda.current_device()]
        wrapped = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
        self._ddp_param_ids.update(id(p) for p in module.parameters())
        return wrapped

    @property
    def model_ddp(self) -> nn.Module:
        """``self.model`` for training forwards: DDP-wrapped (once, on first use) when distributed.

        Forward through it in ``forward_backward``; registered modules used another way get
        their gradients averaged by :meth:`sync_gradients` instead.
        """
        wrapped = self.__dict__.get("_model_ddp")
        if wrapped is None:
            wrapped = self.__dict__["_model_ddp"] = self.wrap_ddp(self.model)
        return wrapped

    @model_ddp.setter
    def model_ddp(self, module: nn.Module) -> None:
        self.__dict__["_model_ddp"] = module

    # ---------------------------------------------------------------- checkpoints

    def _generators(self) -> dict[str, torch.Generator | None]:
        dm = getattr(self, "dm", None)
        return {
            "train_x": getattr(dm, "train_generator", None),
            "train_u": getattr(dm, "train_generator_u", None),
        }

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: float | None = None,
        model_name: str = "",
        iteration: int = 0,
    ) -> None:
        """Save every registered model (main process only); ``epoch`` is 0-based.

        ``iteration`` > 0: a mid-epoch checkpoint after that many batches of ``epoch``.
        """
        if not dist_utils.is_main_process():
            return
        extra = {
            "rng_state": checkpointer.capture_rng_state(self._generators()),
            "precision": self.precision.state_dict(),
            "best_result": self.best_result,
            "trainer_state": self.trainer_state_dict(),
        }
        if iteration > 0:
            extra["epoch_generator_state"] = dict(self._epoch_gen_state)
        checkpointer.save_models(
            self._models,
            self._optims,
            self._scheds,
            epoch,
            directory,
            is_best=is_best,
            val_result=val_result,
            model_name=model_name,
            extra=extra,
            iteration=iteration,
        )

    def trainer_state_dict(self) -> dict[str, Any]:
        """Extra training state saved inside every checkpoint (e.g. GPA); override with
        :meth:`load_trainer_state_dict`. Must be ``weights_only``-loadable (tensors, lists...)."""
        return {}

    def load_trainer_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`trainer_state_dict` returned (called on resume)."""

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model from ``directory``; return the epoch to start from."""
        start_epoch, extra = checkpointer.resume_models(
            directory, self._models, self._optims, self._scheds
        )
        self._resume = {}
        if extra:
            checkpointer.restore_rng_state(extra.get("rng_state"), self._generators())
            self.precision.load_state_dict(extra.get("precision"))
            if extra.get("best_result") is not None:
                self.best_result = float(extra["best_result"])
            if extra.get("trainer_state"):
                self.load_trainer_state_dict(extra["trainer_state"])
            if extra.get("iteration"):
                self._resume = {
                    "iteration": int(extra["iteration"]),
                    "rng_state": extra.get("rng_state"),
                    "epoch_generator_state": extra.get("epoch_generator_state") or {},
                }
        return start_epoch

    # ---------------------------------------------------------------- mid-epoch resume

    def _start_epoch_iteration(self) -> int:
        """Call right before ``iter(loader)``: returns the batches to skip (mid-epoch resume).

        Records the loader generators' state (saved in mid-epoch checkpoints); when resuming
        mid-epoch, rewinds them to the interrupted epoch's start so the same batches come out.
        """
        gens = {k: g for k, g in self._generators().items() if g is not None}
        skip = int(self._resume.get("iteration", 0))
        if skip:
            for key, state in self._resume["epoch_generator_state"].items():
                if key in gens:
                    gens[key].set_state(state)
        self._epoch_gen_state = {k: g.get_state() for k, g in gens.items()}
        return skip

    def _skip_resumed_batch(self, batch_idx: int) -> bool:
        """True for a batch a mid-epoch checkpoint already trained on (it is drawn, not used).

        The batches are drawn (not skipped by index) so that data augmentation and worker
        seeds advance exactly as in the interrupted run; after the last one every RNG is set
        to the checkpoint's state.
        """
        skip = int(self._resume.get("iteration", 0))
        if batch_idx >= skip:
            return False
        if batch_idx == skip - 1:
            checkpointer.restore_rng_state(self._resume.get("rng_state"), self._generators())
            logger.info(f"Skipped the {skip} batches done before the mid-epoch checkpoint")
            self._resume = {}
        return True

    def _after_batch(self, batch_idx: int) -> None:
        """Mid-epoch checkpoint every ``TRAIN.CHECKPOINT_ITER_FREQ`` batches (0 = never)."""
        freq = int(self.cfg.TRAIN.get("CHECKPOINT_ITER_FREQ", 0))
        done = batch_idx + 1
        if freq > 0 and done % freq == 0 and done < self.num_batches:
            self.save_model(self.epoch, self.output_dir, iteration=done)

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load the final weights (:func:`checkpointer.find_checkpoint`: ``model-best.pth.tar`` if
        the run wrote one, else its last save) or ``model.pth.tar-<epoch>`` into every model."""
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given")
            return
        self.results_epoch = checkpointer.load_models(
            directory, self._models, epoch, keep_own=CLASSNAME_BUFFERS
        )

    def load_model_for_eval(self, directory: str, epoch: int | None = None) -> None:
        """``--eval-only``: :meth:`load_model` (possibly a trainer's override), then record the
        epoch of the checkpoint that was read: the engine, not each trainer, knows which epoch
        ``results.json`` reports."""
        name = next(iter(self._models), "") if directory else ""
        if name:  # the one rule: a missing --load-epoch / empty --model-dir is the user's error
            checkpointer.find_checkpoint(directory, name, epoch=epoch, purpose="final")
        self.load_model(directory, epoch)
        if name:
            self.results_epoch = checkpointer.checkpoint_epoch(directory, name, epoch)

    # ---------------------------------------------------------------- modes and optimisation

    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        """train()/eval() the *registered* modules only (frozen encoders keep their mode, P12)."""
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f'Unknown mode "{mode}"; use "train", "test" or "eval"')

    def update_lr(self, names: str | list[str] | None = None) -> None:
        """Step the registered schedulers now.

        The engine steps them itself (:meth:`step_schedulers`); upstream trainer files call this
        at their last batch, and a scheduler stepped so is not stepped again that epoch.
        """
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()
                self._lr_stepped.add(name)

    def step_schedulers(self, interval: str) -> None:
        """Engine: step the schedulers of ``interval`` ("iter" after each batch, "epoch" at its end)."""
        for name, sched in self._scheds.items():
            if sched is None or scheduler_interval(sched) != interval:
                continue
            if interval == "epoch" and name in self._lr_stepped:
                continue
            sched.step()

    def detect_anomaly(self, loss: torch.Tensor, terms: dict[str, Any] | None = None) -> bool:
        """Non-finite loss: raise :class:`NonFiniteLossError` (TRAIN.NONFINITE "stop", the
        default) or return True so the caller skips the step ("skip")."""
        if torch.isfinite(loss).all():
            return False
        return self._non_finite("loss", loss, terms)

    def _non_finite(self, what: str, loss: torch.Tensor, terms: dict[str, Any] | None) -> bool:
        cfg = getattr(self, "cfg", None)
        policy = str(cfg.TRAIN.get("NONFINITE", "stop")) if cfg is not None else "stop"
        epoch, batch = getattr(self, "epoch", 0), getattr(self, "batch_idx", 0)
        shown = {
            k: float(v)
            for k, v in (terms or {}).items()
            if torch.is_tensor(v) or isinstance(v, (int, float))
        }
        msg = (
            f"{what} is infinite or NaN at epoch {epoch + 1}, batch {batch + 1}: loss "
            f"{float(loss.detach().float().mean()):.4g}"
            + (f", terms {shown}" if shown else "")
            + f" (precision {self.precision.name}). Likely causes: fp16 overflow (use "
            "PREC fp32/bf16/amp), a too large learning rate (OPTIM.LR) or loss weight (e.g. "
            "the KD weight / temperature), or bad input images. Set TRAIN.NONFINITE skip to "
            "skip such steps; the last good checkpoint is kept."
        )
        if policy == "skip":
            self.skipped_steps = getattr(self, "skipped_steps", 0) + 1
            logger.warning(f"Skipping the step: {msg}")
            return True
        raise NonFiniteLossError(msg)

    def _grads_finite(self, names: str | list[str] | None) -> bool:
        for optim in self._optimizers(names):
            for group in optim.param_groups:
                for p in group["params"]:
                    if p.grad is not None and not torch.isfinite(p.grad).all():
                        return False
        return True

    def _optimizers(self, names: str | list[str] | None) -> list[Any]:
        return [self._optims[n] for n in self.get_model_names(names) if self._optims[n] is not None]

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for optim in self._optimizers(names):
            optim.zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        if self.detect_anomaly(loss):
            self._skip_update = True  # TRAIN.NONFINITE skip: the next model_update() is dropped
            return
        self.precision.backward(loss, self._optimizers(None))

    def sync_gradients(self, names: str | list[str] | None = None) -> None:
        """Average over ranks the gradients that no DDP wrapper averaged (upstream trainers)."""
        if dist_utils.get_world_size() <= 1:
            return
        seen: set[int] = set()
        for name in self.get_model_names(names):
            model = self._models[name]
            if model is None:
                continue
            for p in model.parameters():
                # Every rank runs the same code path, so the set of parameters holding a
                # gradient (hence the sequence of all-reduces) is the same on all ranks.
                if id(p) in seen or id(p) in self._ddp_param_ids or p.grad is None:
                    continue
                seen.add(id(p))
                dist_utils.all_reduce_mean_(p.grad)

    def model_update(self, names: str | list[str] | None = None) -> None:
        optims = self._optimizers(names)
        if getattr(self, "_skip_update", False):
            self._skip_update = False
            self.model_zero_grad(names)
            return
        self.sync_gradients(names)
        if not self.precision.uses_scaler(optims) and not self._grads_finite(names):
            loss = torch.tensor(float("nan"))
            if self._non_finite("gradient", loss, None):
                self.model_zero_grad(names)
                return
        self.precision.step(optims)

    def model_backward_and_update(
        self,
        loss: torch.Tensor,
        names: str | list[str] | None = None,
        terms: dict[str, Any] | None = None,
    ) -> None:
        """zero_grad, finite-loss check, (scaled) backward, gradient sync, finite-gradient
        check (without a grad scaler, which handles inf/NaN steps itself), step.

        ``terms`` (the loss components) only make a non-finite report more useful.
        """
        self.model_zero_grad(names)
        if self.detect_anomaly(loss, terms):
            return
        optims = self._optimizers(names)

        def before_step() -> None:
            self.sync_gradients(names)
            if not self.precision.uses_scaler(optims) and not self._grads_finite(names):
                if self._non_finite("gradient", loss, terms):
                    self.model_zero_grad(names)
                    raise _SkipStep

        try:
            self.precision.backward_and_step(loss, optims, before_step=before_step)
        except _SkipStep:
            pass

    def get_current_lr(self, names: str | list[str] | None = None) -> float:
        """lr of param group 0 of the first (or first given) registered optimizer."""
        names = self.get_model_names(names)
        if not names or self._optims[names[0]] is None:
            raise RuntimeError("get_current_lr(): no registered model has an optimizer")
        return self._optims[names[0]].param_groups[0]["lr"]

    # ---------------------------------------------------------------- metrics

    def init_writer(self, log_dir: str) -> None:
        """Open TensorBoard at ``log_dir`` and ``<OUTPUT_DIR>/metrics.jsonl`` (main process)."""
        if self._writer is None and dist_utils.is_main_process():
            logger.info(f"Initialize tensorboard (log_dir={log_dir})")
            jsonl = None
            out = getattr(self, "output_dir", None)
            if out:
                jsonl = f"{out}/metrics.jsonl"
            self._writer = MetricWriter(log_dir, jsonl)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None) -> None:
        """TensorBoard scalar; a silent no-op when no writer is open (e.g. eval-only)."""
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # ---------------------------------------------------------------- loop

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic loop; the range is evaluated after before_train() (resume sets start_epoch)."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self, split: str | None = None) -> Any:
        raise NotImplementedError

    def parse_batch_train(self, batch: Any) -> Any:
        raise NotImplementedError

    def parse_batch_test(self, batch: Any) -> Any:
        raise NotImplementedError

    def forward_backward(self, batch: Any) -> Any:
        raise NotImplementedError

    def model_inference(self, input: Any) -> Any:
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """Builds device, precision, data, model and evaluator from ``cfg`` (upstream order)."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.check_cfg(cfg)

        self.device = resolve_device(cfg.USE_CUDA)

        # Save as attributes some frequently used variables
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR

        self.cfg = cfg
        self.results_epoch: int | None = None  # epoch of the loaded weights (results.json)
        self.precision = Precision.from_name(self.get_precision_name(cfg), self.device)
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -float("inf")

    def check_cfg(self, cfg: Any) -> None:
        """Hook to reject bad configs before anything is built (receives cfg; no self.cfg yet)."""
        pass

    def get_precision_name(self, cfg: Any) -> str:
        """``cfg.TRAINER.<NAME>.PREC`` when that key exists, else "fp32"."""
        name = str(cfg.TRAINER.NAME).upper()
        node = cfg.TRAINER.get(name) if name else None
        if node is not None and hasattr(node, "get") and node.get("PREC") is not None:
            return node.PREC
        return "fp32"

    def build_data_loader(self) -> None:
        """Create the DataManager and expose its loaders and dataset metadata."""
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u  # optional, can be None
        self.val_loader = dm.val_loader  # optional, can be None
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname  # dict {label: classname}
        self.dm = dm

    def build_model(self) -> None:
        """Trainers override this: build ``self.model`` and register_model() its parts."""
        raise NotImplementedError(
            f"{type(self).__name__}.build_model() is not implemented: build self.model and call "
            "self.register_model(name, module, optim, sched)"
        )

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.OUTPUT_DIR
        if self.cfg.RESUME:
            directory = self.cfg.RESUME
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.start_epoch > 0:
            self.epoch = self.start_epoch - 1  # the last completed epoch (if none remains)

        # Initialize summary writer (TensorBoard + metrics.jsonl), main process only
        if dist_utils.is_main_process():
            writer_dir = f"{self.output_dir}/tensorboard"
            mkdir_if_missing(writer_dir)
            self.init_writer(writer_dir)

        # Remember the starting time (for computing the elapsed time)
        self.time_start = time.time()

    def selects_best_val(self) -> bool:
        """Whether to evaluate ``val`` each epoch and deploy ``model-best`` (TEST.FINAL_MODEL).

        A trainer whose "val" is not a real held-out split overrides this to return False.
        """
        return self.cfg.TEST.FINAL_MODEL == "best_val"

    def after_train(self) -> None:
        logger.info("Finish training")

        do_test = not self.cfg.TEST.NO_TEST
        if do_test:
            if self.selects_best_val():
                logger.info("Deploy the model with the best val performance")
                dist_utils.barrier()  # rank 0 has finished writing model-best
                self.load_model(self.output_dir)
            else:
                logger.info("Deploy the last-epoch model")
            self.test()

        # Show elapsed time
        elapsed = round(time.time() - self.time_start)
        elapsed = str(datetime.timedelta(seconds=elapsed))
        logger.info(f"Elapsed: {elapsed}")

        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        meet_checkpoint_freq = (
            (self.epoch + 1) % self.cfg.TRAIN.CHECKPOINT_FREQ == 0
            if self.cfg.TRAIN.CHECKPOINT_FREQ > 0
            else False
        )

        if do_test and self.selects_best_val():
            curr_result = self.test(split="val")
            is_best = curr_result > self.best_result
            if is_best:
                self.best_result = curr_result
                self.save_model(
                    self.epoch,
                    self.output_dir,
                    val_result=curr_result,
                    model_name="model-best.pth.tar",
                )

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    def run_steps(self, batches: Iterable[tuple[Any, ...]], skip: int = 0) -> None:
        """One epoch: ``forward_backward(*args)`` for each ``args`` of ``batches`` (there are
        ``self.num_batches``), with progress logging, the LR schedulers stepped and mid-epoch
        checkpoints; the first ``skip`` batches (done before a mid-epoch checkpoint) are drawn
        but not trained on. Create ``batches`` after :meth:`_start_epoch_iteration`."""
        self.set_model_mode("train")
        self._lr_stepped.clear()
        log = _EpochLogger(self, self.num_batches)
        end = time.time()
        for batch_idx, args in enumerate(batches):
            self.batch_idx = batch_idx
            if skip and self._skip_resumed_batch(batch_idx):
                end = time.time()
                continue
            log.data_time.update(time.time() - end)
            loss_summary = self.forward_backward(*args)
            log.batch_time.update(time.time() - end)
            log.step(self.batch_idx, loss_summary)
            self.step_schedulers("iter")
            self._after_batch(batch_idx)
            end = time.time()
        self.step_schedulers("epoch")
        log.finish()

    # ---------------------------------------------------------------- evaluation

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        """The seam of evaluation: a function ``images -> logits`` over ``subset.classnames``.

        The default scores the classes the model was built for with :meth:`model_inference`
        (upstream trainer files); trainers that can score other classes (new classes, another
        dataset's) override it, which also turns on the base/new evaluation.
        """
        own = list(self.dm.dataset.classnames)
        if list(subset.classnames) != own:
            raise NotImplementedError(
                f"{type(self).__name__} cannot score classes other than those it was built for; "
                "implement classifier_for(subset) to evaluate other classes"
            )
        return self.model_inference

    def supports_class_subsets(self) -> bool:
        return type(self).classifier_for is not SimpleTrainer.classifier_for

    def eval_protocol(self) -> str:
        """``"domains"`` with ``DATASET.TARGET_DOMAINS``; ``"base_new"`` on a class half."""
        if self.cfg.DATASET.TARGET_DOMAINS:
            return "domains"
        half = self.cfg.DATASET.get("SUBSAMPLE_CLASSES", "all") in ("base", "new")
        return "base_new" if half and self.supports_class_subsets() else "all"

    def evaluate_subset(
        self, subset: EvalSubset, split: str = "test", loader: Any = None
    ) -> dict[str, float]:
        """Evaluate one subset (its ``items``, or ``loader``); logs the Dassl result block."""
        self.set_model_mode("eval")
        if subset.items is None:
            logger.info(f"Evaluate on the *{split}* set")
            tag = split
            if loader is None:
                loader = self.val_loader if split == "val" else self.test_loader
        else:
            logger.info(
                f"Evaluate on the *{split}* set: {subset.name} "
                f"{'domain' if self.eval_protocol() == 'domains' else 'classes'} "
                f"({len(subset.classnames)} classes, {len(subset.items):,} images)"
            )
            tag = f"{split}_{subset.name}"
            loader = build_data_loader(
                self.cfg,
                sampler_type=self.cfg.DATALOADER.TEST.SAMPLER,
                data_source=subset.items,
                batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
                tfm=self.dm.tfm_test,
                is_train=False,
            )
        if list(subset.classnames) == list(self.dm.dataset.classnames):
            evaluator = self.evaluator
        else:
            evaluator = build_evaluator(self.cfg, lab2cname=dict(enumerate(subset.classnames)))
        with torch.no_grad():
            classify = self.classifier_for(subset)
        results = run_evaluation(classify, loader, self.parse_batch_test, evaluator)
        for k, v in results.items():
            self.write_scalar(f"{tag}/{k}", v, self.epoch)
        if self._writer is not None:
            self._writer.log_test(tag, self.epoch + 1, results)
        return results

    def final_evaluation(self) -> dict[str, Any]:
        """Evaluate every subset of :meth:`eval_protocol`, write ``results.json``, return metrics."""
        cfg = self.cfg
        protocol = self.eval_protocol()
        subsets = eval_subsets(
            self.dm.dataset,
            protocol,
            cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"),
            cfg.DATASET.TARGET_DOMAINS,
        )
        accs = {s.name: self.evaluate_subset(s)["accuracy"] for s in subsets}
        metrics: dict[str, Any]
        if protocol == "base_new" and set(accs) == {"base", "new"}:
            metrics = {"base": accs["base"], "new": accs["new"]}
            metrics["hm"] = harmonic_mean(metrics["base"], metrics["new"])
            logger.info(
                f"=> base-to-novel: base {metrics['base']:.2f}%, new {metrics['new']:.2f}%, "
                f"HM {metrics['hm']:.2f}%"
            )
        elif protocol == "domains":
            metrics = {"accuracy": sum(accs.values()) / max(len(accs), 1), "domains": accs}
            metrics["target_domains"] = list(accs)  # the json's keys are sorted; keep the order
            table = ", ".join(f"{k} {v:.2f}%" for k, v in accs.items())
            logger.info(f"=> per domain: {table}; mean {metrics['accuracy']:.2f}%")
        else:
            metrics = {"accuracy": next(iter(accs.values()))}
        epoch = self.results_epoch if self.results_epoch is not None else self.epoch + 1
        write_results(cfg.OUTPUT_DIR, metrics, cfg, epoch)
        return metrics

    def test(self, split: str | None = None) -> Any:
        """``"val"``: per-epoch validation; else the final evaluation. Returns the first metric."""
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            names = list(self.dm.dataset.classnames)
            subset = EvalSubset("val", None, names, range(0, len(names)))
            return next(iter(self.evaluate_subset(subset, "val").values()))
        return next(iter(self.final_evaluation().values()))

    def model_inference(self, input: Any) -> Any:
        """Logits of ``self.model`` over the classes it was built for (float32)."""
        with self.precision.autocast():
            out = self.model(input)
        return out.float() if isinstance(out, torch.Tensor) else out

    def parse_batch_test(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        return input, label


def _set_loader_epoch(loader: Any, epoch: int) -> None:
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


class _EpochLogger:
    """Progress line (spec 2.3), per-iteration TensorBoard scalars, per-epoch JSON record."""

    def __init__(self, trainer: TrainerBase, num_batches: int):
        self.t = trainer
        self.num_batches = num_batches
        self.losses = MetricMeter()
        self.batch_time = AverageMeter()
        self.data_time = AverageMeter()
        # The lr this epoch trains with: the scheduler is stepped at (or inside) the last batch,
        # so reading it at the end would give the next epoch's value.
        self.epoch_lr = self._lr()

    def _lr(self) -> float | None:
        """Current lr, or None for a trainer without an optimizer (e.g. zero-shot)."""
        try:
            return self.t.get_current_lr()
        except RuntimeError:  # nothing registered with an optimizer
            return None

    def step(self, batch_idx: int, loss_summary: dict[str, Any] | None) -> None:
        t = self.t
        self.losses.update(loss_summary)
        meet_freq = (batch_idx + 1) % t.cfg.TRAIN.PRINT_FREQ == 0
        only_few_batches = self.num_batches < t.cfg.TRAIN.PRINT_FREQ
        if meet_freq or only_few_batches:
            nb_remain = self.num_batches - batch_idx - 1
            nb_remain += (t.max_epoch - t.epoch - 1) * self.num_batches
            eta_seconds = self.batch_time.avg * nb_remain
            eta = str(datetime.timedelta(seconds=int(eta_seconds)))
            info = [
                f"epoch [{t.epoch + 1}/{t.max_epoch}]",
                f"batch [{batch_idx + 1}/{self.num_batches}]",
                f"time {self.batch_time.val:.3f} ({self.batch_time.avg:.3f})",
                f"data {self.data_time.val:.3f} ({self.data_time.avg:.3f})",
                f"{self.losses}",
            ]
            lr = self._lr()
            if lr is not None:
                info.append(f"lr {lr:.4e}")
            info.append(f"eta {eta}")
            logger.info(" ".join(info))

        if t._writer is not None:
            n_iter = t.epoch * self.num_batches + batch_idx
            for name, meter in self.losses.meters.items():
                t.write_scalar("train/" + name, meter.avg, n_iter)
            lr = self._lr()
            if lr is not None:
                t.write_scalar("train/lr", lr, n_iter)

    def finish(self) -> None:
        t = self.t
        if t._writer is not None:
            t._writer.log_train_epoch(
                t.epoch + 1, {k: m.avg for k, m in self.losses.meters.items()}, self.epoch_lr
            )


class TrainerXU(SimpleTrainer):
    """Trainer over a labelled (x) and an unlabelled (u) loader (domain adaptation / SSL)."""

    def run_epoch(self) -> None:
        _set_loader_epoch(self.train_loader_x, self.epoch)
        _set_loader_epoch(self.train_loader_u, self.epoch)

        len_train_loader_x = len(self.train_loader_x)
        len_train_loader_u = len(self.train_loader_u)
        count = self.cfg.TRAIN.COUNT_ITER
        if count == "train_x":
            self.num_batches = len_train_loader_x
        elif count == "train_u":
            self.num_batches = len_train_loader_u
        elif count == "smaller_one":
            self.num_batches = min(len_train_loader_x, len_train_loader_u)
        else:
            raise ValueError(
                f'TRAIN.COUNT_ITER "{count}" is invalid; use train_x, train_u or smaller_one'
            )

        skip = self._start_epoch_iteration()
        self.run_steps(self._batch_pairs(), skip)

    def _batch_pairs(self) -> Iterator[tuple[Any, Any]]:
        """``num_batches`` pairs (x, u), restarting whichever loader runs out first."""
        iter_x, iter_u = iter(self.train_loader_x), iter(self.train_loader_u)
        for _ in range(self.num_batches):
            try:
                batch_x = next(iter_x)
            except StopIteration:
                iter_x = iter(self.train_loader_x)
                batch_x = next(iter_x)
            try:
                batch_u = next(iter_u)
            except StopIteration:
                iter_u = iter(self.train_loader_u)
                batch_u = next(iter_u)
            yield batch_x, batch_u

    def forward_backward(self, batch_x: Any, batch_u: Any = None) -> Any:  # type: ignore[override]
        raise NotImplementedError

    def parse_batch_train(self, batch_x: Any, batch_u: Any = None) -> Any:  # type: ignore[override]
        input_x = batch_x["img"].to(self.device)
        label_x = batch_x["label"].to(self.device)
        input_u = batch_u["img"].to(self.device)
        return input_x, label_x, input_u


class TrainerX(SimpleTrainer):
    """Trainer over the labelled loader only (every prompt trainer subclasses this)."""

    def run_epoch(self) -> None:
        _set_loader_epoch(self.train_loader_x, self.epoch)
        self.num_batches = len(self.train_loader_x)
        skip = self._start_epoch_iteration()
        self.run_steps(((batch,) for batch in self.train_loader_x), skip)

    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain
