"""Architectures of the built-in tasks, sized by ``hidden``, ``layers``, ``dropout`` (and ``heads``).

Inputs are ``(N, *input_shape)``: tabular ``(N, F)``, sequences ``(N, C, L)``, images ``(N, C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from trainers.catalog import MODELS


def build_model(name: str, input_shape: tuple[int, ...], n_outputs: int, config: Mapping[str, Any]) -> nn.Module:
    """An MLP, a small CNN (1-D or 2-D, after ``input_shape``), a GRU or a transformer encoder (sequences
    ``(C, L)``) ending in ``n_outputs`` values, initialised after ``config["init"]``.

    Raises:
        ValueError: unknown model name, or a sequence model given non-sequence inputs.
    """
    hidden, layers, dropout = int(config["hidden"]), int(config["layers"]), float(config["dropout"])
    act = _ACTIVATIONS.get(str(config.get("activation", "relu")))
    if act is None:
        raise ValueError(f"unknown activation {config.get('activation')!r}; activations: {', '.join(_ACTIVATIONS)}")
    if name == "mlp":
        model = _mlp(input_shape, n_outputs, hidden, layers, dropout, bool(config.get("batch_norm", False)), act)
    elif name == "cnn":
        model = _cnn(input_shape, n_outputs, hidden, layers, dropout, bool(config.get("conv_batch_norm", True)),
                     act)
    elif name in ("gru", "transformer"):
        if len(input_shape) != 2:
            raise ValueError(f"model {name} needs sequence inputs (channels, length), got shape {input_shape}")
        channels, length = input_shape
        if name == "gru":
            model = _GRU(channels, n_outputs, hidden, layers, dropout)
        else:
            model = _Transformer(channels, length, n_outputs, hidden, layers, int(config.get("heads", 2)), dropout)
    else:
        raise ValueError(f"unknown model {name!r}; models: {', '.join(MODELS)}")
    initialise(model, str(config.get("init", "default")), float(config.get("init_std", 0.02)),
               float(config.get("init_value", 0.0)))
    return model


def initialise(model: nn.Module, scheme: str, std: float = 0.02, value: float = 0.0) -> None:
    """Re-initialise every weight matrix / kernel (parameters with 2+ dimensions) of ``model``.

    Biases, norm layers' scales and embeddings-free 1-D parameters keep torch's defaults; ``default``
    leaves everything as torch built it.

    Raises:
        ValueError: unknown scheme.
    """
    schemes: dict[str, Callable[[torch.Tensor], Any]] = {
        "xavier_uniform": nn.init.xavier_uniform_,
        "xavier_normal": nn.init.xavier_normal_,
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        "orthogonal": nn.init.orthogonal_,
        "normal": lambda w: nn.init.normal_(w, 0.0, std),
        "constant": lambda w: nn.init.constant_(w, value),
    }
    if scheme == "default":
        return
    if scheme not in schemes:
        raise ValueError(f"unknown init {scheme!r}; inits: default, {', '.join(schemes)}")
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() >= 2:
                schemes[scheme](weight)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                                                    "gelu": nn.GELU}


def _mlp(input_shape: tuple[int, ...], n_outputs: int, hidden: int, layers: int, dropout: float,
         batch_norm: bool, activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Module:
    width = 1
    for size in input_shape:
        width *= size
    blocks: list[nn.Module] = [nn.Flatten()]
    for _ in range(layers):
        norm: nn.Module = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        blocks += [nn.Linear(width, hidden), norm, activation(), nn.Dropout(dropout)]
        width = hidden
    blocks.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*blocks)


def _cnn(input_shape: tuple[int, ...], n_outputs: int, channels: int, layers: int, dropout: float,
         batch_norm: bool, activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Module:
    if len(input_shape) not in (2, 3):
        raise ValueError(f"model cnn needs (channels, length) or (channels, height, width) inputs, got {input_shape}")
    two_d = len(input_shape) == 3
    conv, pool, norm = (nn.Conv2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d) if two_d else (
        nn.Conv1d, nn.AdaptiveAvgPool1d, nn.BatchNorm1d)
    blocks: list[nn.Module] = []
    in_channels = input_shape[0]
    for _ in range(layers):
        blocks += [conv(in_channels, channels, kernel_size=3, padding=1),
                   norm(channels) if batch_norm else nn.Identity(), activation()]
        in_channels = channels
    blocks += [pool(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, n_outputs)]
    return nn.Sequential(*blocks)


class _GRU(nn.Module):
    """GRU over the sequence's steps; the last step's hidden state feeds a linear head."""

    def __init__(self, channels: int, n_outputs: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.transpose(1, 2))  # (N, C, L) -> (N, L, C)
        return self.head(out[:, -1])


class _Transformer(nn.Module):
    """Transformer encoder over the steps with learned positions; mean-pooled into a linear head."""

    def __init__(self, channels: int, length: int, n_outputs: int, width: int, layers: int, heads: int,
                 dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, width)
        self.position = nn.Parameter(torch.zeros(1, length, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.transpose(1, 2)) + self.position
        return self.head(self.encoder(h).mean(1))
