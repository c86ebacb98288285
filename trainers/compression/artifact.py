"""The file each variant is saved as, and the one function that loads it back without trusting pickle.

A variant file is ``torch.save`` of a dict: ``format``, ``method``, ``transform`` (none, dynamic_int8 or
static_int8), ``config`` (the built-in model's settings, ``hidden`` already reduced for structured
pruning and distillation), ``input_shape``, ``n_outputs`` and ``model_state``. Loading rebuilds the
architecture from ``config`` with ``build_model``, applies the same transform to it and loads the
state dict.

Every file loads with ``torch.load(weights_only=True)`` except dynamic int8 models with a GRU or LSTM:
their packed weights are TorchBind objects (``torch.ScriptObject``), which the weights-only unpickler
refuses. ``load_variant`` allowlists exactly that one type (``torch.serialization.safe_globals``), after
checking with ``get_unsafe_globals_in_checkpoint`` that the file names no other global; anything else
is refused. The ONNX file on the same run is the pickle-free alternative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from trainers.compression import quantize
from trainers.models import build_model

FORMAT = "hpo.compress/1"
Transform = Literal["none", "dynamic_int8", "static_int8"]
_TORCHBIND = "torch.ScriptObject"


class UnsafeFile(ValueError):
    """A variant file names globals beyond the allowlist; it is not loaded."""


def save_variant(path: Path, model: nn.Module, *, method: str, transform: Transform, config: dict[str, Any],
                 input_shape: tuple[int, ...], n_outputs: int) -> Path:
    """Write ``model``'s state dict with what rebuilds it; returns ``path``."""
    torch.save({"format": FORMAT, "method": method, "transform": transform, "config": dict(config),
                "input_shape": list(input_shape), "n_outputs": int(n_outputs), "model_state": model.state_dict()},
               path)
    return path


def load_variant(path: str | Path) -> nn.Module:
    """The model saved by ``save_variant``, in evaluation mode, loaded without unpickling code.

    Raises:
        UnsafeFile: the file names a global other than ``torch.ScriptObject``.
        ValueError: not a variant file.
    """
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    if unsafe - {_TORCHBIND}:
        raise UnsafeFile(f"{path} names globals {sorted(unsafe)}; refusing to unpickle it")
    with torch.serialization.safe_globals([torch.ScriptObject] if unsafe else []), quantize.quiet():
        payload = torch.load(str(path), weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an hpo compress variant (format {FORMAT})")
    config = payload["config"]
    model = build_model(str(config["model"]), tuple(payload["input_shape"]), int(payload["n_outputs"]), config)
    model = skeleton(model.eval(), payload["transform"])
    model.load_state_dict(payload["model_state"])
    return model.eval()


def skeleton(model: nn.Module, transform: Transform) -> nn.Module:
    """``model`` turned into the module layout a ``transform``ed state dict loads into."""
    if transform == "dynamic_int8":
        return quantize.dynamic_int8(model)
    if transform == "static_int8":
        return quantize.static_int8(model, calibration=None)
    return model
