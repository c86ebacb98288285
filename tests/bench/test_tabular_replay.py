"""The tabular benchmark's replay drives hpo's real searcher and scheduler against a surrogate.

A tiny table (24 configurations of the benchmark's Sobol design, curves made up from how far lr is
from 1e-2, so the best region is known) stands in for the committed one.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

TABULAR = Path(__file__).resolve().parents[2] / "bench" / "tabular"
sys.path.insert(0, str(TABULAR))

import generate  # noqa: E402
import replay  # noqa: E402
import table as tabular  # noqa: E402
import yaml  # noqa: E402

EPOCHS = 20


def _curve(params: dict) -> np.ndarray:
    """Accuracy rising to a ceiling set by lr's distance (in decades) from 1e-2."""
    ceiling = 0.9 - 0.25 * abs(math.log10(params["lr"]) + 2)
    return np.array([ceiling * (1 - math.exp(-e / 4)) for e in range(1, EPOCHS + 1)])


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory: pytest.TempPathFactory) -> tabular.Surrogate:
    """A random forest on the tiny table: its answers are averages of the table's values."""
    folder = tmp_path_factory.mktemp("table")
    points = generate.design(24, seed=0)
    curves = []
    for params in points:
        c = np.full((len(generate.METRICS), EPOCHS), 0.5, dtype=np.float32)
        c[generate.METRICS.index("val_accuracy")] = _curve(params)
        curves.append(c)
    rows = {"index": list(range(24)), "params": [json.dumps(p, sort_keys=True) for p in points],
            "status": ["complete"] * 24, "curves": curves}
    generate.write_shard(folder / "curves-0.npz", rows, EPOCHS, 0)
    table = tabular.load(folder)
    assert len(table) == 24 and table.val_accuracy.shape == (24, EPOCHS)
    return tabular.Surrogate(table, tabular.sweep_config(), trees=10)


RAW = yaml.safe_load(tabular.SWEEP.read_text(encoding="utf-8"))


@pytest.mark.parametrize("method", ["auto+asha", "random", "grid"])
def test_replay_spends_the_budget_through_the_real_searcher_and_scheduler(surrogate: tabular.Surrogate,
                                                                          method: str) -> None:
    config = replay.sweep_config(method, seed=1, budget_trials=3, raw=RAW)
    points, trials = replay.replay(config, replay.surrogate_objective(surrogate), budget=3 * EPOCHS)
    assert len(points) == 3 * EPOCHS
    assert all(b >= a for a, b in zip(points, points[1:], strict=False))  # best so far never drops
    if method == "auto+asha":
        assert trials > 3  # ASHA stopped trials early, so more of them fit in the budget
    else:
        assert trials == 3
    if method == "grid":  # its points differ in lr (1e-3, 3e-3, 1e-2 first): the surrogate tells them apart
        assert points[-1] > points[EPOCHS - 1]
    # a forest's answer is an average of the table's values: never above the table's best (0.9 at lr 1e-2)
    assert 0.5 < points[-1] <= 0.9


def test_same_seed_same_replay(surrogate: tabular.Surrogate) -> None:
    config = replay.sweep_config("auto+asha", seed=2, budget_trials=2, raw=RAW)
    again = replay.sweep_config("auto+asha", seed=2, budget_trials=2, raw=RAW)
    run = replay.surrogate_objective(surrogate)
    assert replay.replay(config, run, 40) == replay.replay(again, run, 40)


def test_regret_quartiles_and_the_claim_lines() -> None:
    runs = {"random": {0: [0.5] * 10, 1: [0.6] * 10}, "auto+asha": {0: [0.7] * 10, 1: [0.7] * 10}}
    lines = replay.claim_lines(runs, reference=0.8, budget=10)
    assert lines[0].startswith("random search's median regret at B: 0.2500")
    assert "auto+asha       1 = 0.10 of B; seeds whose regret at B/3 <= random's at B (same seed): 2/2" in lines[2]
    assert replay.regret_at([], 5, 0.8) == 0.8
