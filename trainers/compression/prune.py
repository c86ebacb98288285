"""Pruning: global unstructured magnitude pruning, and structured pruning that rebuilds smaller layers.

Unstructured pruning zeroes the smallest weights over all weight matrices and kernels at once
(``torch.nn.utils.prune.global_unstructured``); the tensors stay dense, so the file and the CPU
latency do not shrink, only the count of non-zero weights does. Structured pruning removes whole hidden
units (MLP, GRU) or channels (CNN) by the L2 norm of their incoming weights and rebuilds the model
with the smaller ``hidden``: the same built-in architecture, really smaller and faster.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from trainers.models import build_model


def weight_tensors(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, name)`` of every weight matrix or kernel: Linear/Conv ``weight``, RNN ``weight_ih/hh_l*``."""
    found: list[tuple[nn.Module, str]] = []
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            found.append((module, "weight"))
        elif isinstance(module, nn.GRU | nn.LSTM):  # once pruned, a weight is held as <name>_orig + a mask
            names = [n.removesuffix("_orig") for n, _ in module.named_parameters(recurse=False)]
            found += [(module, name) for name in names if name.startswith("weight")]
    return found


def global_magnitude(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy of ``model`` whose ``sparsity`` share of weights (smallest magnitudes over all layers) is
    masked to zero. The masks stay attached (fine-tuning keeps pruned weights at zero); ``make_permanent``
    removes them."""
    pruned = copy.deepcopy(model)
    prune.global_unstructured(weight_tensors(pruned), pruning_method=prune.L1Unstructured, amount=sparsity)
    return pruned


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold pruning masks into the weights (plain parameters again, zeros where pruned); in place."""
    for module, name in weight_tensors(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)
    if isinstance(model, nn.Module):
        for module in model.modules():
            if isinstance(module, nn.GRU | nn.LSTM):
                module.flatten_parameters()
    return model


def sparsity_of(model: nn.Module) -> float:
    """Share of zero entries over the weight matrices and kernels."""
    tensors = [getattr(m, n) for m, n in weight_tensors(model)]
    total = sum(t.numel() for t in tensors)
    return float(sum(int((t == 0).sum()) for t in tensors) / total) if total else 0.0


def structured(model: nn.Module, config: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int,
               sparsity: float) -> tuple[nn.Module, dict[str, Any]]:
    """Remove ``sparsity`` of every hidden layer's units (or channels), keeping those with the largest norms.

    Args:
        model: a built-in ``mlp``, ``cnn`` or ``gru`` built from ``config``.
        config: the winner's config (``model``, ``hidden``, ``layers``, ...).
        input_shape, n_outputs: what the model was built for.
        sparsity: fraction of units removed, in (0, 1).

    Returns:
        The smaller model and its config (``hidden`` reduced); ``build_model`` rebuilds it from that config.

    Raises:
        ValueError: an architecture structured pruning does not know (the transformer).
    """
    name, hidden = str(config["model"]), int(config["hidden"])
    keep = max(1, int(round(hidden * (1 - sparsity))))
    small_config = {**config, "hidden": keep}
    small = build_model(name, input_shape, n_outputs, small_config)
    old = model.state_dict()
    if name == "mlp":
        state = _slice_sequential(old, model, keep, (nn.Linear,), (nn.BatchNorm1d,))
    elif name == "cnn":
        state = _slice_sequential(old, model, keep, (nn.Conv1d, nn.Conv2d), (nn.BatchNorm1d, nn.BatchNorm2d))
    elif name == "gru":
        state = _slice_gru(old, int(config["layers"]), hidden, keep)
    else:
        raise ValueError(f"structured pruning supports mlp, cnn and gru, not {name}")
    small.load_state_dict(state)
    return small, small_config


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, keep).indices).values


def _slice_sequential(old: dict[str, torch.Tensor], model: nn.Module, keep: int,
                      layer_types: tuple[type[nn.Module], ...],
                      norm_types: tuple[type[nn.Module], ...]) -> dict[str, torch.Tensor]:
    """MLP / CNN: each hidden Linear or Conv keeps its ``keep`` strongest outputs; the next layer keeps the
    matching inputs, a BatchNorm in between the matching statistics; the last Linear (the CNN's head
    after pooling) keeps all outputs."""
    names = [n for n, m in model.named_modules() if isinstance(m, layer_types)]
    last_linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    norms = {n for n, m in model.named_modules() if isinstance(m, norm_types)}
    hidden_layers = [n for n in names if n != last_linear]
    state = dict(old)
    previous: torch.Tensor | None = None
    for layer in [*hidden_layers, last_linear]:
        weight = old[f"{layer}.weight"]
        if previous is not None:
            weight = weight[:, previous]
        if layer == last_linear:
            state[f"{layer}.weight"] = weight
            break
        scores = weight.flatten(1).norm(dim=1)
        kept = _top(scores, keep)
        state[f"{layer}.weight"] = weight[kept]
        state[f"{layer}.bias"] = old[f"{layer}.bias"][kept]
        norm = _next_norm(layer, norms)
        if norm is not None:
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"{norm}.{key}"] = old[f"{norm}.{key}"][kept]
        previous = kept
    return state


def _next_norm(layer: str, norms: set[str]) -> str | None:
    """The norm layer right after ``layer`` in a Sequential (its index + 1), if it is one."""
    prefix, _, index = layer.rpartition(".")
    following = f"{prefix}.{int(index) + 1}" if prefix else str(int(index) + 1)
    return following if following in norms else None


def _slice_gru(old: dict[str, torch.Tensor], layers: int, hidden: int, keep: int) -> dict[str, torch.Tensor]:
    """GRU: unit j owns rows j, H+j, 2H+j (reset, update, new gates) of every layer's matrices; the next
    layer's inputs and the head's columns follow the kept units."""
    state = dict(old)
    previous: torch.Tensor | None = None
    for layer in range(layers):
        ih, hh = old[f"gru.weight_ih_l{layer}"], old[f"gru.weight_hh_l{layer}"]
        gates = [slice(g * hidden, (g + 1) * hidden) for g in range(3)]
        scores = torch.stack([ih[g].norm(dim=1) ** 2 + hh[g].norm(dim=1) ** 2 for g in gates]).sum(0)
        kept = _top(scores, keep)
        rows = torch.cat([kept + g * hidden for g in range(3)])
        state[f"gru.weight_ih_l{layer}"] = ih[rows] if previous is None else ih[rows][:, previous]
        state[f"gru.weight_hh_l{layer}"] = hh[rows][:, kept]
        for key in ("bias_ih", "bias_hh"):
            state[f"gru.{key}_l{layer}"] = old[f"gru.{key}_l{layer}"][rows]
        previous = kept
    state["head.1.weight"] = old["head.1.weight"][:, previous]
    return state
