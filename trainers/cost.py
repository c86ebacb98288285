"""What a model costs, measured once per trial: parameter count, serialized size, FLOPs and latency.

``params``, ``size_mb`` and ``flops`` depend on the model alone, not on what else runs on the machine,
so concurrent trials may optimise them; ``latency_ms`` is wall-clock time and only means something when
one trial runs at a time (``hpo.rules`` enforces that when it is an objective).
"""

from __future__ import annotations

import io
import logging
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

_LATENCY_RUNS = 20  # forward passes timed (after one warm-up); the median is reported


def model_cost(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
    autocast: AbstractContextManager[Any] | None = None,
) -> dict[str, float]:
    """``params``, ``size_mb``, ``flops`` (forward, one sample) and ``latency_ms`` (median, one sample).

    ``autocast``: the trial's precision context (its forward passes run under it), none for fp32.
    A model the FLOP counter cannot trace (some custom modules) reports no ``flops``: a sweep that
    optimises it then fails that trial by name instead of optimising a made-up number.
    """
    cost = {
        "params": float(sum(p.numel() for p in model.parameters())),
        "size_mb": _state_dict_bytes(model) / 1e6,
    }
    sample = torch.zeros((1, *input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        # counted with autograd on: under no_grad, eval-mode attention takes a fused kernel the counter
        # does not see (a transformer would count its linear layers only)
        with autocast or nullcontext():
            flops = _forward_flops(model, sample)
            if flops is not None:
                cost["flops"] = flops
            with torch.no_grad():
                cost["latency_ms"] = _latency_ms(model, sample)
    finally:
        model.train(was_training)
    return cost


def _state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _forward_flops(model: nn.Module, sample: torch.Tensor) -> float | None:
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            model(sample)
    except Exception:  # noqa: BLE001 - an untraceable custom op: no flops rather than a failed trial
        log.warning("could not count the FLOPs of %s", type(model).__name__, exc_info=True)
        return None
    return float(counter.get_total_flops())


def _latency_ms(model: nn.Module, sample: torch.Tensor) -> float:
    model(sample)  # warm-up: lazy initialisation, allocator
    times = []
    for _ in range(_LATENCY_RUNS):
        if sample.is_cuda:
            torch.cuda.synchronize(sample.device)
        started = time.perf_counter()
        model(sample)
        if sample.is_cuda:
            torch.cuda.synchronize(sample.device)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[len(times) // 2]
