"""A real sweep's trials carry the training signals: per-epoch metrics, the per-layer artifact, the findings."""

from __future__ import annotations

import json

from hpo.checkpoints import SIGNALS_FILE
from tracker.queries import Store
from trainers import signal_names as names


def test_trials_of_a_real_sweep_store_their_signals_and_are_diagnosed_from_them(small_sweep_store) -> None:
    uri, _, result = small_sweep_store
    store = Store(uri)
    seen = set()
    for row in result["trials"]:
        if row["status"] == "FAILED":  # diverged in its first epoch: nothing was reported
            continue
        trial = store.trial(row["run_id"])
        curves = trial.curves()
        epochs = len(curves["val_accuracy"])
        for key in (names.GRAD_NORM, names.WEIGHT_NORM, names.DEAD_RELU, names.update_ratio_of("output")):
            assert len(curves[key]) == epochs and all(v is not None and v >= 0 for v in curves[key]), key
        assert curves[names.INIT_DEAD_RELU][0] is not None  # measured before training, logged with epoch 1
        assert SIGNALS_FILE in trial.artifacts  # the per-layer detail, not metrics
        local = store.local_artifact_path(SIGNALS_FILE, trial.artifact_uri)
        layers = json.loads(local.read_text())["layers"]
        assert [layer["group"] for layer in layers] == ["input", "hidden", "output"]  # hidden 32, 2 layers
        assert trial.diagnosis is not None
        decay = float(trial.params.get("weight_decay", 0))
        if float(trial.params["lr"]) == 1e-6 and trial.params["optimizer"] == "sgd" and decay == 0:
            # sgd at lr 1e-6 barely moves its weights: the finding and advice name the setting
            assert "update_ratio_too_small" in trial.diagnosis["findings"]
            assert any("lr is 1e-06 here" in r for r in trial.diagnosis["recommendations"])
            seen.add("too small")
        if decay == 1e4:  # lr 1e-6 but weight decay 1e4: the decay alone shrinks the weights 1% a step
            assert trial.diagnosis["evidence"]["inside_update_ratio_max"] > 1e-3
            seen.add("decay")
        if float(trial.params["lr"]) == 0.05 and trial.params["optimizer"] == "adam":
            assert trial.diagnosis["evidence"]["inside_update_ratio_max"] > 1e-3
            seen.add("adam")
    assert seen == {"too small", "decay", "adam"}
