"""In-memory datasets: tensors, hold-out and k-fold splits, seeded batch order, augmentation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import numpy as np
import torch

Kind = Literal["classification", "regression"]
Split = Literal["val", "test"]


class HeldOut:
    """A test split that is materialised on its first read only.

    The search never reads it: trials build their data with it unread, and the loop touches only the
    training and validation tensors. ``hpo.holdout`` reads it once, for the winner, after the search.

    Args:
        load: makes ``(x_test, y_test)`` as tensors (converting, scaling, reading a file).
        rows: how many examples it holds, when known without reading them.
    """

    def __init__(self, load: Callable[[], tuple[torch.Tensor, torch.Tensor]], rows: int | None = None) -> None:
        self._load: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = load
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.rows = rows

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tensors is None:
            assert self._load is not None  # set until the first read
            self._tensors, self._load = self._load(), None
        return self._tensors


@dataclass(frozen=True)
class TaskData:
    """A dataset split into training, validation and (optionally) test tensors.

    Attributes:
        x_train, y_train, x_val, y_val: features (N, *input_shape) float32; labels (N,) int64 for
            classification, targets (N,) or (N, k) float32 for regression.
        n_classes: number of classes (classification); 0 for regression.
        name: the task's name.
        kind: classification or regression.
        test: the held-out test split, read on first use of ``x_test`` / ``y_test``; None when the
            data has none.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    kind: Kind = "classification"
    test: HeldOut | None = field(default=None, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Logits per example (classification) or targets per example (regression)."""
        if self.kind == "classification":
            return self.n_classes
        return 1 if self.y_train.dim() == 1 else int(self.y_train.shape[1])

    @property
    def x_test(self) -> torch.Tensor | None:
        """Test features (reads the test split); None when there is none."""
        return None if self.test is None else self.test.tensors()[0]

    @property
    def y_test(self) -> torch.Tensor | None:
        """Test labels or targets (reads the test split); None when there is none."""
        return None if self.test is None else self.test.tensors()[1]

    def split(self, name: Split) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(x, y)`` of the validation or test split; None when the data has no such split."""
        if name == "val":
            return self.x_val, self.y_val
        return None if self.test is None else self.test.tensors()

    def subset(self, fraction: float, seed: int) -> TaskData:
        """Keep a random ``fraction`` of the training split (validation and test untouched)."""
        if fraction >= 1.0:
            return self
        keep = max(self.n_classes, int(round(len(self.y_train) * fraction)))
        order = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(seed))[:keep]
        return replace(self, x_train=self.x_train[order], y_train=self.y_train[order])

    def folds(self, k: int, seed: int) -> list[TaskData]:
        """``k`` cross-validation splits over training and validation pooled; the test split stays out.

        Each fold's validation part is one of ``k`` near-equal shares of a shuffle fixed by ``seed``
        (stratified by class for classification); its training part is the rest.
        """
        x, y = torch.cat([self.x_train, self.x_val]), torch.cat([self.y_train, self.y_val])
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        if self.kind == "classification":  # deal each class round-robin so folds keep class ratios
            order = order[torch.argsort(y[order], stable=True)]
        share = torch.arange(len(y)) % k
        out = []
        for fold in range(k):
            val, train = order[share == fold], order[share != fold]
            out.append(replace(self, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val]))
        return out


def split_settings(options: Mapping[str, Any], *, test_default: float | None) -> tuple[float, float | None, int]:
    """``(val_fraction, test_fraction, split_seed)`` of a trial config, catalog defaults where unset.

    ``test_default`` is the test share when the config sets none (None: no test split).
    """
    from trainers.catalog import CATALOG

    test = options.get("test_fraction", test_default)
    return (float(options.get("val_fraction", CATALOG["val_fraction"].default)),
            None if test is None else float(test), int(options.get("split_seed", CATALOG["split_seed"].default)))


def from_arrays(name: str, x: np.ndarray, y: np.ndarray, val_fraction: float, *, standardise: bool,
                kind: Kind | None = None, split_seed: int = 0, test_fraction: float | None = None,
                test_rows: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None) -> TaskData:
    """Split ``(x, y)`` into training, validation and (optionally) test parts, fixed by ``split_seed``.

    Args:
        x, y: features (N, ...) and labels/targets (N,) or (N, k).
        val_fraction: share of the rows left after the test split held out for validation.
        standardise: scale each feature (and a regression target) with the training part's mean and std.
        kind: classification when ``y`` holds integers (or bools/strings), regression when floats;
            inferred when None.
        split_seed: fixes every split (the sweep's seed: the same for all its trials).
        test_fraction: share of all rows held out first as the test split (stratified for classification).
        test_rows: reads a separate test set ``(x_test, y_test)`` instead (called on first use only).

    Returns:
        The split as float32 features and int64 labels or float32 targets.
    """
    from sklearn.model_selection import train_test_split

    kind = kind or infer_kind(y)
    classes = np.unique(y) if kind == "classification" else None
    y = _encode(y, classes, "the data")
    x = np.asarray(x, dtype=np.float32)
    test_part: tuple[np.ndarray, np.ndarray] | None = None
    if test_fraction:
        x, x_test, y, y_test = train_test_split(x, y, test_size=test_fraction, random_state=split_seed,
                                                stratify=y if kind == "classification" else None)
        test_part = (x_test, y_test)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_fraction, random_state=split_seed,
                                                      stratify=y if kind == "classification" else None)
    scale_x = _Scaler(x_train, standardise)
    scale_y = _Scaler(y_train, standardise and kind == "regression")

    test = None
    if test_part is not None or test_rows is not None:
        load = partial(_test_tensors, test_part or test_rows, scale_x, scale_y, classes)
        test = HeldOut(load, len(test_part[1]) if test_part is not None else None)
    n_classes = len(classes) if classes is not None else 0
    return TaskData(name, _tensor(scale_x(x_train)), _tensor(scale_y(y_train)), _tensor(scale_x(x_val)),
                    _tensor(scale_y(y_val)), n_classes, kind, test)


def _test_tensors(rows: tuple[np.ndarray, np.ndarray] | Callable[[], tuple[np.ndarray, np.ndarray]],
                  scale_x: _Scaler, scale_y: _Scaler, classes: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split as tensors, scaled and encoded like the training part (``rows``: the arrays or a reader).

    A module-level function under ``functools.partial``, so that data holding an unread test split pickles
    (DDP workers, Ray).
    """
    xt, yt = rows() if callable(rows) else rows
    return _tensor(scale_x(np.asarray(xt, dtype=np.float32))), _tensor(scale_y(_encode(yt, classes, "the test set")))


def _encode(y: np.ndarray, classes: np.ndarray | None, where: str) -> np.ndarray:
    """Labels as 0..k-1 indices into ``classes`` (int64); targets as float32 when ``classes`` is None.

    Raises:
        ValueError: a label that is not one of ``classes``.
    """
    y = np.asarray(y)
    if classes is None:
        return y.astype(np.float32)
    index = np.searchsorted(classes, y)
    unknown = (index >= len(classes)) | (classes[np.minimum(index, len(classes) - 1)] != y)
    if unknown.any():
        raise ValueError(f"{where} holds label {y[unknown][0]!r}, which the training data does not; "
                         f"labels: {', '.join(map(str, classes[:20]))}")
    return index.astype(np.int64)


class _Scaler:
    """Standardise with the mean and std of ``reference`` (constant columns stay as they are); or pass through."""

    def __init__(self, reference: np.ndarray, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self.mean, std = reference.mean(0), reference.std(0)
            self.std = np.where(std > 0, std, 1.0)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return ((a - self.mean) / self.std).astype(np.float32) if self.enabled else a


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def infer_kind(y: np.ndarray | torch.Tensor) -> Kind:
    """Regression when the targets are floating point, classification otherwise."""
    dtype = y.dtype
    floating = dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)
    return "regression" if floating else "classification"


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
