"""In-memory datasets: tensors, hold-out and k-fold splits, seeded batch order, augmentation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

Kind = Literal["classification", "regression"]
SPLIT_SEED = 0  # splits are fixed so every trial of every sweep sees the same validation set


@dataclass(frozen=True)
class TaskData:
    """A dataset already split into training and validation tensors.

    Attributes:
        x_train, y_train, x_val, y_val: features (N, *input_shape) float32; labels (N,) int64 for
            classification, targets (N,) or (N, k) float32 for regression.
        n_classes: number of classes (classification); 0 for regression.
        name: the task's name.
        kind: classification or regression.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    kind: Kind = "classification"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Logits per example (classification) or targets per example (regression)."""
        if self.kind == "classification":
            return self.n_classes
        return 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    def subset(self, fraction: float, seed: int) -> TaskData:
        """Keep a random ``fraction`` of the training split (validation untouched)."""
        if fraction >= 1.0:
            return self
        keep = max(self.n_classes, int(round(len(self.y_train) * fraction)))
        order = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(seed))[:keep]
        return replace(self, x_train=self.x_train[order], y_train=self.y_train[order])

    def folds(self, k: int) -> list[TaskData]:
        """``k`` cross-validation splits over all labelled data (training and validation pooled).

        Each fold's validation part is one of ``k`` near-equal shares of a fixed shuffle (stratified
        by class for classification); its training part is the rest.
        """
        x, y = torch.cat([self.x_train, self.x_val]), torch.cat([self.y_train, self.y_val])
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
        if self.kind == "classification":  # deal each class round-robin so folds keep class ratios
            order = order[torch.argsort(y[order], stable=True)]
        share = torch.arange(len(y)) % k
        out = []
        for fold in range(k):
            val, train = order[share == fold], order[share != fold]
            out.append(replace(self, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val]))
        return out


def from_arrays(name: str, x: np.ndarray, y: np.ndarray, val_fraction: float, *, standardise: bool,
                kind: Kind | None = None) -> TaskData:
    """Split ``(x, y)`` into a fixed hold-out of ``val_fraction`` (stratified for classification).

    Args:
        x, y: features (N, ...) and labels/targets (N,) or (N, k).
        val_fraction: share of the rows held out for validation.
        standardise: scale each feature (and a regression target) with the training part's mean and std.
        kind: classification when ``y`` holds integers (or bools/strings), regression when floats;
            inferred when None.

    Returns:
        The split as float32 features and int64 labels or float32 targets.
    """
    from sklearn.model_selection import train_test_split

    kind = kind or infer_kind(y)
    if kind == "classification":
        classes, y = np.unique(y, return_inverse=True)
        y = y.astype(np.int64)
    else:
        y = y.astype(np.float32)
    stratify = y if kind == "classification" else None
    x_train, x_val, y_train, y_val = train_test_split(np.asarray(x, dtype=np.float32), y, test_size=val_fraction,
                                                      random_state=SPLIT_SEED, stratify=stratify)
    if standardise:
        x_train, x_val = _standardise(x_train, x_val)
        if kind == "regression":
            y_train, y_val = _standardise(y_train, y_val)
    n_classes = len(classes) if kind == "classification" else 0
    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return TaskData(name, tensor(x_train), tensor(y_train), tensor(x_val), tensor(y_val), n_classes, kind)


def infer_kind(y: np.ndarray | torch.Tensor) -> Kind:
    """Regression when the targets are floating point, classification otherwise."""
    dtype = y.dtype
    floating = dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)
    return "regression" if floating else "classification"


def _standardise(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)  # constant columns stay as they are
    return ((train - mean) / std).astype(np.float32), ((val - mean) / std).astype(np.float32)


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of ``(x, y)``, shuffled with ``generator`` (in order when it is None)."""
    n = len(y)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


class Augment:
    """Training-batch augmentation: gaussian ``noise`` std and a random circular ``shift`` of up to that
    many steps along the last axis (per example). With both 0 it returns batches untouched."""

    def __init__(self, noise: float, shift: int, generator: torch.Generator) -> None:
        self.noise, self.shift, self.generator = noise, shift, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift > 0:
            length = x.shape[-1]
            offsets = torch.randint(-self.shift, self.shift + 1, (len(x),), generator=self.generator)
            index = (torch.arange(length)[None, :] - offsets[:, None]) % length  # (N, L)
            x = torch.gather(x, -1, index.view(len(x), *([1] * (x.dim() - 2)), length).expand_as(x))
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=self.generator)
        return x
