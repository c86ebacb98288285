"""Post-training int8 quantization on CPU with ``torch.ao.quantization`` (eager mode).

Dynamic int8 stores Linear / GRU / LSTM weights as int8 and quantizes activations per batch at run
time: no calibration, any architecture. Static int8 (the CNN only) also fixes activation scales from
calibration batches of training data, after fusing Conv + BatchNorm + ReLU.

Why ``torch.ao.quantization`` and not ``torchao``: torchao's ``quantize_`` transforms ``nn.Linear``
only (no GRU/LSTM, no conv), and its int8 CPU speed-ups come from ``torch.compile``; the eager
``torch.ao`` path quantizes all three layer kinds, runs with fbgemm/x86 kernels without compiling,
and is what torch 2.13 still ships. It warns that it is deprecated: the warning is silenced here only,
and docs/compression.md says what replaces it when torch drops it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

DYNAMIC_LAYERS: set[type[nn.Module]] = {nn.Linear, nn.GRU, nn.LSTM}
BACKEND = "x86"  # fbgemm + onednn kernels; the default engine of CPU builds


@contextmanager
def quiet() -> Iterator[None]:
    """Silence torch.ao's deprecation warnings (and those of its quantized tensors) inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*TypedStorage is deprecated")
        warnings.filterwarnings("ignore", category=UserWarning, message=r".*quantized tensor creation functions")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.")  # observers' own advice
        yield


def dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its Linear, GRU and LSTM layers dynamically quantized to int8."""
    with quiet():
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), DYNAMIC_LAYERS, dtype=torch.qint8)


class StaticInt8(nn.Module):
    """The CNN between a quantize and a dequantize stub: float in, float out, int8 inside."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.inner = inner
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.inner(self.quant(x)))


def static_int8(model: nn.Module, calibration: torch.Tensor | None) -> nn.Module:
    """A copy of the built-in CNN with conv blocks fused and quantized to int8 with fixed activation scales.

    Args:
        model: the built-in ``cnn`` (a Sequential of [conv, norm or Identity, ReLU] blocks, pool, flatten,
            dropout, linear).
        calibration: examples that set the activation ranges; None builds the skeleton a saved state
            dict loads into (its scales come from the file).

    Raises:
        ValueError: ``model`` is not laid out like the built-in CNN.
    """
    inner = copy.deepcopy(model).eval()
    if not isinstance(inner, nn.Sequential):
        raise ValueError("static int8 needs the built-in cnn (an nn.Sequential of conv blocks)")
    wrapped = StaticInt8(inner).eval()
    with quiet():
        torch.ao.quantization.fuse_modules(wrapped, _fusion_groups(inner), inplace=True)
        wrapped.qconfig = torch.ao.quantization.get_default_qconfig(BACKEND)  # type: ignore[assignment]
        torch.backends.quantized.engine = BACKEND
        torch.ao.quantization.prepare(wrapped, inplace=True)
        if calibration is not None:
            with torch.inference_mode():
                for start in range(0, len(calibration), 256):
                    wrapped(calibration[start : start + 256])
        torch.ao.quantization.convert(wrapped, inplace=True)
    return wrapped


def _fusion_groups(inner: nn.Sequential) -> list[list[str]]:
    """[conv, batch norm, relu] (or [conv, relu] when the norm is an Identity) name groups to fuse."""
    layers = list(inner)
    groups = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv1d | nn.Conv2d):
            norm, relu = layers[i + 1], layers[i + 2]
            if not isinstance(relu, nn.ReLU):
                raise ValueError(f"expected ReLU after the conv at inner.{i}, got {type(relu).__name__}")
            if isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d):
                groups.append([f"inner.{i}", f"inner.{i + 1}", f"inner.{i + 2}"])
            else:
                groups.append([f"inner.{i}", f"inner.{i + 2}"])
    return groups
