"""The tabular benchmark's table (``data/curves-*.npz``, made by ``generate.py``) and its surrogate.

``load`` merges the shards into one ``Table``. ``Surrogate`` answers any configuration of the space of
``mnist1d_mlp.yaml`` with a whole val_accuracy curve (one value per epoch): a random forest (scikit-learn,
multi-output: every epoch at once, so curves keep their shape) over the configurations encoded as
numbers in [0, 1] (log ranges on a log scale, categorical values one-hot, an inactive conditional
parameter 0). A configuration that diverged counts as chance accuracy (0.1) from the epoch it diverged.
``held_out_error`` states how far the surrogate's answers are from curves it was not fitted on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SWEEP = HERE / "mnist1d_mlp.yaml"
CHANCE = 0.1  # ten classes


@dataclass(frozen=True)
class Table:
    """Configurations (sampled parameters only), their val_accuracy curves (n, epochs), all curves
    (n, metrics, epochs), the metric names and each configuration's status (complete / diverged)."""

    params: list[dict[str, Any]]
    val_accuracy: np.ndarray
    curves: np.ndarray
    metrics: tuple[str, ...]
    status: list[str]

    def __len__(self) -> int:
        return len(self.params)


def load(folder: Path = DATA, rows: int | None = None) -> Table:
    """Every shard under ``folder``, in design order; NaN (after a divergence) becomes chance accuracy.

    ``rows``: only the design's first ``rows`` configurations (indices below it), so a figure made from
    part of a growing table can be made again.
    """
    found: dict[int, tuple[str, str, np.ndarray]] = {}
    metrics: tuple[str, ...] = ()
    for path in sorted(folder.glob("curves-*.npz")):
        with np.load(path, allow_pickle=False) as f:
            metrics = tuple(str(m) for m in f["metrics"])
            for i, p, s, c in zip(f["index"], f["params"], f["status"], f["curves"], strict=True):
                if rows is None or int(i) < rows:
                    found[int(i)] = (str(p), str(s), c)
    if not found:
        raise FileNotFoundError(f"no curves-*.npz under {folder}; run bench/tabular/generate.py first")
    order = sorted(found)
    curves = np.stack([found[i][2] for i in order]).astype(np.float64)
    val = curves[:, metrics.index("val_accuracy"), :]
    val = np.where(np.isfinite(val), val, CHANCE)
    return Table([json.loads(found[i][0]) for i in order], val, curves, metrics, [found[i][1] for i in order])


@lru_cache(maxsize=1)
def sweep_config() -> Any:
    """The benchmark's sweep file, validated (once: validation checks the catalog over many points)."""
    from hpo.loading import load_sweep

    return load_sweep(SWEEP)[0]


class Encoder:
    """A configuration -> a vector in [0, 1]^d, from the sweep file's parameter definitions."""

    def __init__(self, config: Any) -> None:
        from hpo.config import Choice, Range

        self.columns: list[tuple[str, Any, Any]] = []  # (parameter, kind, detail)
        for name, param in config.parameters.items():
            if isinstance(param, Range):
                low, high = float(param.min), float(param.max)
                if param.is_log:
                    low, high = math.log(low), math.log(high)
                self.columns.append((name, "range", (low, high, param.is_log)))
            elif isinstance(param, Choice):
                if all(isinstance(v, int | float) and not isinstance(v, bool) for v in param.values):
                    self.columns.append((name, "ordinal", list(param.values)))
                else:
                    self.columns += [(name, "onehot", v) for v in param.values]

    def encode(self, params: dict[str, Any]) -> np.ndarray:
        out = np.zeros(len(self.columns))
        for j, (name, kind, detail) in enumerate(self.columns):
            if name not in params:
                continue  # inactive conditional parameter
            value = params[name]
            if kind == "range":
                low, high, log = detail
                x = math.log(value) if log else float(value)
                out[j] = (x - low) / (high - low) if high > low else 0.0
            elif kind == "ordinal":
                out[j] = detail.index(value) / max(1, len(detail) - 1)
            else:
                out[j] = float(value == detail)
        return out

    def encode_all(self, params: list[dict[str, Any]]) -> np.ndarray:
        return np.stack([self.encode(p) for p in params])


class Surrogate:
    """Answers any configuration of the space with its predicted val_accuracy curve."""

    def __init__(self, table: Table, config: Any, seed: int = 0, trees: int = 200) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.encoder = Encoder(config)
        self.model = RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, max_features=0.6,
                                           random_state=seed, n_jobs=1)
        self.model.fit(self.encoder.encode_all(table.params), table.val_accuracy)
        self.epochs = table.val_accuracy.shape[1]
        self._cache: dict[str, np.ndarray] = {}

        # the trees as plain arrays: walking them for one configuration takes ~1 ms, sklearn's predict ~50
        self._trees = [(t.tree_.children_left, t.tree_.children_right, t.tree_.feature, t.tree_.threshold,
                        t.tree_.value[:, :, 0]) for t in self.model.estimators_]

    def curve(self, params: dict[str, Any]) -> np.ndarray:
        """Predicted val_accuracy after each epoch (length ``epochs``): the mean of the trees' leaves."""
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._cache:
            x = self.encoder.encode(params).astype(np.float32)  # sklearn compares float32 features
            total = np.zeros(self.epochs)
            for left, right, feature, threshold, value in self._trees:
                node = 0
                while left[node] != -1:
                    node = left[node] if x[feature[node]] <= threshold[node] else right[node]
                total += value[node]
            self._cache[key] = total / len(self._trees)
        return self._cache[key]

    def curves(self, params: list[dict[str, Any]]) -> np.ndarray:
        return np.asarray(self.model.predict(self.encoder.encode_all(params)))


def held_out_error(table: Table, config: Any, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """K-fold error of the surrogate on configurations it was not fitted on.

    Returns:
        mae_best: mean absolute error of the best val_accuracy over epochs; mae_curve: over every
        epoch; spearman_best: rank correlation of predicted and real best values; spread: the real
        best values' standard deviation (what a constant guess would be off by, roughly).
    """
    from scipy.stats import spearmanr

    n = len(table)
    order = np.random.default_rng(seed).permutation(n)
    predicted = np.zeros_like(table.val_accuracy)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        sub = Table([table.params[i] for i in train], table.val_accuracy[train], table.curves[train],
                    table.metrics, [table.status[i] for i in train])
        predicted[test] = Surrogate(sub, config, seed=seed, trees=100).curves([table.params[i] for i in test])
    real_best, pred_best = table.val_accuracy.max(axis=1), predicted.max(axis=1)
    return {
        "mae_best": float(np.mean(np.abs(real_best - pred_best))),
        "mae_curve": float(np.mean(np.abs(table.val_accuracy - predicted))),
        "spearman_best": float(spearmanr(real_best, pred_best).statistic),
        "spread": float(np.std(real_best)),
        "n": float(n),
    }
