"""Figures of one model on CPU: its validation metrics, parameter count, file size and latency.

Latency is wall-clock time of ``model(x)`` under ``torch.inference_mode`` with a fixed number of
intra-op threads: ``warmup`` untimed calls, then ``repeats`` timed ones; median and 90th percentile
in milliseconds. Throughput is examples per second at the median. Several models are timed in
interleaved rounds (``time_interleaved``): on a shared machine, load from other processes then falls
on every model alike instead of on whichever was timed while it lasted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.data import TaskData
from trainers.metrics import classification_metrics, regression_metrics

EVAL_BATCH = 1024


@dataclass(frozen=True)
class Latency:
    """Timed calls at one batch size: median and p90 in ms, examples per second at the median."""

    batch: int
    median_ms: float
    p90_ms: float
    throughput: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads; the previous number is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_calls(call: Callable[[], Any], batch: int, *, repeats: int, warmup: int) -> Latency:
    """Median / p90 wall-clock latency of ``call()`` over ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return _latency(times, batch)


def time_interleaved(calls: list[Callable[[], Any]], batch: int, *, repeats: int, warmup: int) -> list[Latency]:
    """Latency of each of ``calls`` on batches of ``batch``: ``warmup`` untimed calls of each, then
    ``repeats`` rounds that time every call once, in turn."""
    for call in calls:
        for _ in range(warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            started = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - started)
    return [_latency(t, batch) for t in times]


def _latency(times: list[float], batch: int) -> Latency:
    times = sorted(times)
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return Latency(batch, median * 1000, p90 * 1000, batch / median if median > 0 else float("inf"))


def torch_call(model: nn.Module, example: torch.Tensor) -> Callable[[], None]:
    """One forward pass of ``model`` on the batch ``example`` in evaluation mode, without autograd."""
    model.eval()

    def call() -> None:
        with torch.inference_mode():
            model(example)

    return call


def torch_latency(model: nn.Module, example: torch.Tensor, *, repeats: int, warmup: int) -> Latency:
    """Latency of ``model`` on the batch ``example`` in evaluation mode, without autograd."""
    return time_calls(torch_call(model, example), len(example), repeats=repeats, warmup=warmup)


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model``'s outputs on ``x`` in evaluation mode, in batches of 1,024, as float32."""
    model.eval()
    return torch.cat([model(x[i : i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])


def evaluate(model: nn.Module, data: TaskData) -> dict[str, float]:
    """The validation metrics the built-in loop reports (``val_loss`` and per-kind ones) for ``model``.

    For choosing (best epoch, best student); a finished variant's reported figures come from
    ``variant_metrics``.
    """
    return score(predict(model, data.x_val), data)


def variant_metrics(outputs_of: Callable[[torch.Tensor], torch.Tensor], data: TaskData) -> dict[str, float]:
    """The metrics reported for one finished variant, whatever runs it (PyTorch, ONNX Runtime).

    The one place variants are scored: every row of the table, every compress run's metrics and the
    bench's figures come from here. The validation split (the one the sweep selected on: ``val_*``) and,
    when the data has one, the test split, read here once per finished variant (``test_*``); choosing
    (best epoch, best student) never looks at test (``evaluate``).

    Args:
        outputs_of: the variant's outputs (logits or predictions) on a batch of inputs.
        data: the task's data.
    """
    metrics = score(_outputs(outputs_of, data.x_val), data)
    test = data.split("test")
    if test is not None:
        x_test, y_test = test
        scored = score(_outputs(outputs_of, x_test), data, y_test)
        metrics.update({f"test_{k.removeprefix('val_')}": v for k, v in scored.items()})
    return metrics


def _outputs(outputs_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([outputs_of(x[i : i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])


def score(out: torch.Tensor, data: TaskData, y: torch.Tensor | None = None) -> dict[str, float]:
    """Metrics (named ``val_*``) of the outputs ``out`` against ``y`` (default: ``data.y_val``), any runtime's."""
    y = data.y_val if y is None else y
    out = out.float()
    if data.kind == "classification":
        loss = float(nn.functional.cross_entropy(out, y))
        return {"val_loss": loss, **classification_metrics(out.argmax(1), y, data.n_classes)}
    pred = out.reshape(y.shape)
    return {"val_loss": float(nn.functional.mse_loss(pred, y)), **regression_metrics(pred, y)}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, nonzero)`` weights of an fp32 model (pruning masks already made permanent)."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p))
    return total, nonzero


def file_size(path: Path) -> int:
    """Bytes on disk of a serialized model."""
    return path.stat().st_size
