"""The built-in training loop: one ``fit()`` to read top to bottom.

Phases per epoch, for each fold in lockstep (one fold unless ``folds`` asks for cross-validation):
train (augment, forward under autocast, backward with accumulation, clip, step, per-batch schedule),
evaluate, per-epoch schedule; then combine the folds, check patience, report, keep the best
epoch's weights, save the resumable state. Optional features are no-op objects when off, not
branches. Nothing here knows Ray: results leave through ``report``, the resumable state through a
``TrainState`` (``hpo.trial_state`` keeps it in a file; a trial re-run after a crash continues from it).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from trainers import catalog
from trainers.cost import model_cost
from trainers.data import Augment, TaskData, batches
from trainers.metrics import classification_metrics, regression_metrics
from trainers.models import build_model
from trainers.optim import build_optimizer, needs_closure
from trainers.resumable import Progress
from trainers.schedules import build_schedule
from trainers.signal_names import is_signal
from trainers.signals import NoSignals, TrainingSignals
from trainers.tasks import load_task

ModelBuilder = Callable[[Mapping[str, Any], tuple[int, ...], int], nn.Module]
EVAL_BATCH = 1024
PROBE_SIZE = 128  # training inputs the signals' probe forward sees before training (init_* dead / saturated units)


class Report(Protocol):
    """Where a trainer sends each epoch's metrics, and the weights when they are the best so far."""

    def __call__(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None: ...


class Dist(Protocol):
    """The processes one model trains on: its rank among ``world_size`` data-parallel copies.

    ``all_reduce`` sums a tensor over all ranks (in place or not; the sum is returned); ``wrap_model``
    makes gradients average across ranks (DDP). ``SingleProcess`` is the no-op default.
    """

    rank: int
    world_size: int

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def wrap_model(self, model: nn.Module) -> nn.Module: ...


class SingleProcess:
    """One process: rank 0 of 1; sums and models pass through unchanged."""

    rank, world_size = 0, 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model


class TrainState(Protocol):
    """Where ``fit`` keeps what it needs to continue after its process died: saved at every epoch end.

    ``load`` returns the last snapshot saved for this very trial and its best epoch's checkpoint, or
    ``(None, None)`` to start from scratch; ``save`` is given the best checkpoint only when it changed.
    """

    def load(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]: ...

    def save(self, snapshot: dict[str, Any], best_checkpoint: dict[str, Any] | None) -> None: ...


class NoState:
    """Keeps nothing: a trial starts from scratch (the default)."""

    def load(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return None, None

    def save(self, snapshot: dict[str, Any], best_checkpoint: dict[str, Any] | None) -> None:
        return None


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` leaves behind: the best epoch and its metrics."""

    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int


def fit(
    config: Mapping[str, Any],
    report: Report,
    *,
    task: str | None = None,
    metric: str = "val_loss",
    goal: str = "minimize",
    data: TaskData | None = None,
    build: ModelBuilder | None = None,
    dist: Dist | None = None,
    state: TrainState | None = None,
) -> FitResult:
    """Train a model on ``task`` (or ``data``) with the settings ``config``; report every epoch.

    Args:
        config: trial config; missing settings take their catalog defaults.
        report: called after every epoch with the metrics (with ``folds``: the mean over folds and
            ``<name>_std``; ``stopped_early: 1.0`` on the last one when ``patience`` ended training; the
            model's cost ``params``, ``size_mb``, ``flops``, ``latency_ms`` from ``trainers.cost``);
            with a checkpoint (model state and config) when the epoch is the best so far on ``metric``.
        task: a built-in task name; needed unless ``data`` is given.
        metric, goal: which epoch counts as best (and what ``patience`` watches).
        data: the data, if already loaded (tests, your own data).
        build: your own ``build_model(config, input_shape, n_outputs) -> nn.Module`` instead of the
            built-in ``model`` setting.
        dist: data-parallel training (each rank trains on its slice of every global batch; gradients
            and training metrics are averaged over ranks, so N ranks compute what 1 would); one
            process when None. Every rank evaluates the whole validation split and reports.
        state: where the resumable state goes at every epoch end (``NoState`` when None). When it holds a
            snapshot, the epochs it covers are reported again as they were (with the best epoch's
            checkpoint) and training continues after them: the reports equal an uninterrupted run's
            where the CPU path is deterministic.

    Returns:
        The best epoch, its metrics and how many epochs ran.

    Raises:
        Diverged: the training or validation loss became NaN or infinite.
        ValueError: neither ``task`` nor ``data`` given.
    """
    config = catalog.resolve(config)
    seed, epochs, k = int(config["seed"]), int(config["epochs"]), int(config["folds"])
    torch.manual_seed(seed)
    device = pick_device()
    if data is None:
        if task is None:
            raise ValueError("fit needs a task name or data")
        data = load_task(task, dict(config))
    split_seed = int(config["split_seed"])  # the sweep's: every trial trains and validates on the same rows
    data = data.subset(float(config["train_fraction"]), split_seed)
    dist = dist or SingleProcess()
    splits = data.folds(k, split_seed) if k >= 2 else [data]
    runs = [_FoldRun(config, split, device, build, dist) for split in splits]
    # measured once (the model's shape is fixed), under the precision the trial trains in
    cost = model_cost(runs[0].module, data.input_shape, device, runs[0].autocast)
    stopper = _Patience(int(config["patience"]), float(config["min_delta"]), goal)
    better = _comparison(goal)
    state = state or NoState()
    progress = Progress.resume(state, runs, stopper, report)

    best = FitResult(progress.best_epoch, progress.best_metrics, progress.epoch) if progress.best_metrics else None
    epoch, last = progress.epoch, progress.epoch if progress.stopped else epochs
    for epoch in range(progress.epoch + 1, last + 1):
        started = time.perf_counter()
        fold_metrics = [run.run_epoch(epoch) for run in runs]
        metrics = {"epoch": float(epoch), **combine_folds(fold_metrics), "epoch_seconds": time.perf_counter() - started,
                   **cost}
        stop = stopper.should_stop(metrics[metric])
        if stop:
            metrics["stopped_early"] = 1.0
        improved = best is None or better(metrics[metric], best.best_metrics[metric])
        if improved:
            best = FitResult(epoch, metrics, epoch)
        checkpoint = _checkpoint(runs, config, epoch, metrics) if improved else None
        report(metrics, checkpoint)
        progress.save(state, runs, stopper, (best.best_epoch, best.best_metrics), metrics, checkpoint, stop)
        if stop:
            break
    assert best is not None  # epochs >= 1 is validated; keeps type checkers honest
    return FitResult(best.best_epoch, best.best_metrics, epoch)


def pick_device() -> torch.device:
    """The one place that chooses where training runs: CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _FoldRun:
    """One model with its optimizer, schedule and step machinery, trained on one split."""

    def __init__(
        self, config: Mapping[str, Any], data: TaskData, device: torch.device, build: ModelBuilder | None, dist: Dist
    ):
        seed = int(config["seed"])
        self.data, self.device, self.dist = data, device, dist
        self.classify = data.kind == "classification"
        make = build or (lambda cfg, shape, n: build_model(str(cfg["model"]), shape, n, cfg))
        self.module = make(dict(config), data.input_shape, data.n_outputs).to(device)  # what checkpoints save
        self.model = dist.wrap_model(self.module)  # what trains: the module itself, or DDP around it
        self.optimizer = build_optimizer(self.module.parameters(), config)
        self.batch_size, self.accumulate = int(config["batch_size"]), int(config["accumulate_steps"])
        steps_per_epoch = math.ceil(math.ceil(len(data.y_train) / self.batch_size) / self.accumulate)
        self.schedule = build_schedule(self.optimizer, config, steps_per_epoch=steps_per_epoch,
                                       epochs=int(config["epochs"]))
        self.loss_fn = _loss(self.classify, float(config["label_smoothing"]))
        self.penalty = _penalty(self.module, float(config["l1"]), float(config["l2"]))
        self.clip = _clipper(float(config["clip_norm"]), float(config["clip_value"]))
        self.autocast, self.scaler = precision_context(str(config["precision"]), device)
        self.augment = Augment(float(config["input_noise"]), int(config["shift"]),
                               torch.Generator().manual_seed(seed + 1))
        self.shuffle = torch.Generator().manual_seed(seed)
        self.closure_needed = needs_closure(config)
        # rank 0 measures: gradients and weights are the same on every rank after DDP's all-reduce
        on = bool(config["training_signals"]) and dist.rank == 0
        self.signals: TrainingSignals | NoSignals = NoSignals()
        if on:
            with self.autocast:  # the probe sees the activations training sees (bf16/fp16 under autocast)
                # no optimizer hooks: _step calls gradients() and stepped() itself, on the measured steps only
                self.signals = TrainingSignals(self.module, None, steps_per_epoch, data.x_train[:PROBE_SIZE])

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, evaluate, step the per-epoch schedule; the fold's metrics."""
        train = self._train_epoch(epoch)
        with self.signals.watching():  # dead and saturated units: counted on the evaluation's own forward
            val = self.evaluate()
        signals = self.signals.epoch_metrics()
        lr_used = self.schedule.lr
        self.schedule.step_epoch(val["val_loss"])
        if not math.isfinite(val["val_loss"]):
            raise Diverged(f"validation loss became {val['val_loss']} at epoch {epoch} (lr={lr_used:.3g})")
        return {**train, **val, "lr": lr_used, **signals}

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        group: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        pending = list(batches(self.data.x_train, self.data.y_train, self.batch_size, self.shuffle))
        step = 0  # optimizer steps so far this epoch
        for i, (x, y) in enumerate(pending):
            # augment the global batch, then keep this rank's slice: N ranks see what 1 process would
            share = _rank_slice(len(y), self.dist)
            group.append((self.augment(x)[share].to(self.device), y[share].to(self.device), len(y)))
            if len(group) < self.accumulate and i < len(pending) - 1:
                continue
            # the signals measure a few steps per epoch; the others do not call them at all (a set lookup)
            loss_sum, outputs = self._step(group, step if step in self.signals.measured_steps else None)
            step += 1
            if not math.isfinite(loss_sum):
                raise Diverged(f"training loss became {loss_sum} at epoch {epoch} (lr={self.schedule.lr:.3g})")
            self.schedule.step_batch()
            for (_, yb, _), out in zip(group, outputs, strict=True):
                seen += len(yb)
                correct += int((out.argmax(1) == yb).sum()) if self.classify else 0
            total_loss += loss_sum
            group = []
        sums = self.dist.all_reduce(torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=self.device))
        loss_all, correct_all, seen_all = float(sums[0]), float(sums[1]), float(sums[2])
        train = {"train_loss": loss_all / seen_all}
        return {**train, "train_accuracy": correct_all / seen_all} if self.classify else train

    def _step(self, group: list[tuple[torch.Tensor, torch.Tensor, int]], measured: int | None
              ) -> tuple[float, list[torch.Tensor]]:
        """One optimizer step over the accumulated mini-batches of ``group`` (this rank's slice, global size);
        ``measured``: the step's index in the epoch when the training signals measure it, else None.

        Returns:
            The sum of this rank's data loss times its batch size over the group (first evaluation), and
            its outputs.
        """
        world = self.dist.world_size
        captured: list[tuple[float, torch.Tensor]] = []
        first = True

        def closure() -> torch.Tensor:
            nonlocal first
            self.optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=self.device)
            for x, y, size in group:
                with self.autocast:
                    out = self.model(x)
                # mean over this slice, weighted so DDP's average over ranks is the mean over the global batch
                data_loss = self.loss_fn(_shaped(out, y), y) if len(y) else out.sum() * 0.0
                loss = (data_loss * (len(y) * world / size) + self.penalty()) / len(group)
                self.scaler.scale(loss).backward()
                total = total + loss.detach()
                if first:
                    captured.append((float(data_loss.detach()) * len(y), out.detach()))
            self.scaler.unscale_(self.optimizer)
            if first and measured is not None:
                self.signals.gradients(measured)  # before clipping: the norm the clip threshold is compared with
            first = False
            self.clip(self.module.parameters())
            return self.dist.all_reduce(total) / world  # the global loss: LBFGS decides the same on every rank

        skipped = False
        if self.closure_needed:  # fp16 (a real GradScaler) is rejected for these by cross_check
            self.optimizer.step(closure)  # type: ignore[arg-type]  # torch's stub says float; LBFGS takes a tensor
        else:
            closure()
            # fp16: the scaler skips a step whose gradients overflowed and lowers its scale (a host read, on
            # the few measured steps only); the signals must not take that non-step as an update of 0
            scale = self.scaler.get_scale() if measured is not None and self.scaler.is_enabled() else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = scale is not None and self.scaler.get_scale() < scale
        if measured is not None:
            self.signals.stepped(measured, skipped=skipped)
        return sum(loss for loss, _ in captured), [out for _, out in captured]

    def evaluate(self) -> dict[str, float]:
        """Validation metrics of the model in evaluation mode (loss without smoothing or penalty)."""
        # the bare module: every rank evaluates everything, no collective needed
        return split_metrics(self.module, self.data.x_val, self.data.y_val, self.data, self.device, self.autocast)


@torch.no_grad()
def split_metrics(module: nn.Module, x: torch.Tensor, y: torch.Tensor, data: TaskData, device: torch.device,
                  autocast: AbstractContextManager[Any], prefix: str = "val") -> dict[str, float]:
    """Metrics of ``module`` on ``(x, y)`` in evaluation mode, named ``<prefix>_loss``, ``<prefix>_accuracy``...

    The one evaluation path: validation during training, test (``trainers.evaluate``) after the search.
    The loss is plain cross-entropy or MSE (no smoothing, no penalty).
    """
    module.eval()
    outputs = []
    for xb, _ in batches(x, y, EVAL_BATCH, None):
        with autocast:
            outputs.append(module(xb.to(device)).float())
    out, y = torch.cat(outputs), y.to(device)
    loss = float(_loss(data.kind == "classification", 0.0)(_shaped(out, y), y))
    if data.kind == "classification":
        metrics = {"val_loss": loss, **classification_metrics(out.argmax(1), y, data.n_classes)}
    else:
        metrics = {"val_loss": loss, **regression_metrics(_shaped(out, y), y)}
    return {prefix + name[len("val"):]: value for name, value in metrics.items()}


def _rank_slice(size: int, dist: Dist) -> slice:
    """This rank's contiguous share of a global batch of ``size`` (sizes differ by at most one)."""
    base, extra = divmod(size, dist.world_size)
    start = dist.rank * base + min(dist.rank, extra)
    return slice(start, start + base + (dist.rank < extra))


def _shaped(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Outputs as the loss wants them: logits as they are, regression predictions shaped like ``y``."""
    out = out.float()
    return out if y.dtype == torch.int64 else out.reshape(y.shape)


def _loss(classify: bool, label_smoothing: float) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing) if classify else nn.MSELoss()


def _penalty(model: nn.Module, l1: float, l2: float) -> Callable[[], torch.Tensor | float]:
    """``l1 * sum|w| + l2 * sum w^2`` over weight matrices and kernels (2+ dims); 0.0 when both are 0."""
    if l1 == 0 and l2 == 0:
        return lambda: 0.0
    weights = [p for p in model.parameters() if p.dim() >= 2]

    def penalty() -> torch.Tensor:
        return sum((l1 * w.abs().sum() + l2 * w.pow(2).sum() for w in weights), weights[0].new_zeros(()))

    return penalty


def _clipper(max_norm: float, max_value: float) -> Callable[[Any], None]:
    """Clip gradients by value then by global norm; each is skipped when 0."""

    def clip(params: Any) -> None:
        params = [p for p in params if p.grad is not None]
        if max_value > 0:
            nn.utils.clip_grad_value_(params, max_value)
        if max_norm > 0:
            nn.utils.clip_grad_norm_(params, max_norm)

    return clip if max_norm > 0 or max_value > 0 else (lambda params: None)


def precision_context(precision: str, device: torch.device) -> tuple[AbstractContextManager[Any], torch.amp.GradScaler]:
    """Autocast context and gradient scaler for ``precision``; fp32 gets no-op ones.

    fp16 scales the loss only on CUDA (CPU autocast has no GradScaler); bf16 needs no scaling.
    """
    if precision == "fp32":
        autocast: AbstractContextManager[Any] = nullcontext()
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        autocast = torch.autocast(device.type, dtype=dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")
    return autocast, scaler


class _Patience:
    """Early stopping inside a trial: stop after ``patience`` epochs without improving by > ``min_delta``.

    With ``patience`` 0 it never stops.
    """

    def __init__(self, patience: int, min_delta: float, goal: str) -> None:
        self.patience, self.min_delta, self.sign = patience, min_delta, 1.0 if goal == "maximize" else -1.0
        self.best: float | None = None
        self.waited = 0

    def should_stop(self, value: float) -> bool:
        if self.patience == 0:
            return False
        if self.best is None or self.sign * (value - self.best) > self.min_delta:
            self.best, self.waited = value, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


def _comparison(goal: str) -> Callable[[float, float], bool]:
    return (lambda a, b: a > b) if goal == "maximize" else (lambda a, b: a < b)


def combine_folds(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """One fold's metrics as they are; several folds' as the mean plus ``<name>_std`` (sample std)."""
    if len(fold_metrics) == 1:
        return dict(fold_metrics[0])
    combined: dict[str, float] = {}
    for name in fold_metrics[0]:
        values = [m[name] for m in fold_metrics]
        combined[name] = statistics.fmean(values)
        if name != "lr" and not is_signal(name):  # signals: the mean only, the store grows by a constant
            combined[f"{name}_std"] = statistics.stdev(values)
    return combined


def _checkpoint(
    runs: list[_FoldRun], config: Mapping[str, Any], epoch: int, metrics: dict[str, float]
) -> dict[str, Any]:
    checkpoint = {"model_state": runs[0].module.state_dict(), "config": dict(config), "epoch": epoch,
                  "metrics": metrics}
    layers = runs[0].signals.layer_report()
    if layers:  # per-layer detail at the best epoch: the trainable writes it beside the weights
        checkpoint["training_signals"] = {"epoch": epoch, **layers}
    if len(runs) > 1:
        checkpoint["fold_states"] = [run.module.state_dict() for run in runs]
    return checkpoint


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> tuple[float, float]:
    """Mean loss and accuracy of a classifier ``model`` on ``(x, y)`` in evaluation mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for xb, yb in batches(x, y, EVAL_BATCH, None):
        logits = model(xb)
        total_loss += float(loss_fn(logits, yb)) * len(yb)
        correct += int((logits.argmax(1) == yb).sum())
    return total_loss / len(y), correct / len(y)
