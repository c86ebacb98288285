"""Score a saved checkpoint on one split: how a sweep's winner gets its test figures, after the search.

``score_checkpoint`` rebuilds the model and the data from the trial's config exactly as the loop did
(the same split seed, so the same rows), loads the best epoch's weights and evaluates them through the
loop's own evaluation path (``trainers.loop.split_metrics``). With k-fold cross-validation each fold's
model is scored and the figures combined as the loop combines validation: the mean and ``<name>_std``.
Nothing here knows Ray or MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers import catalog
from trainers.data import Split, TaskData
from trainers.loop import combine_folds, pick_device, precision_context, split_metrics
from trainers.models import build_model
from trainers.tasks import load_task
from trainers.user_parts import user_model_and_data

CHECKPOINT_FILE = "model.pt"  # the file the loop's checkpoints are saved as (hpo.trial_keys names it too)


def score_checkpoint(config: Mapping[str, Any], checkpoint_dir: str | Path, *, task: str | None,
                     user_parts: Mapping[str, Any] | None, split: Split = "test") -> dict[str, float]:
    """Metrics of a checkpoint's model on ``split``, named ``<split>_<name>`` (``test_accuracy``, ``test_loss``...).

    Args:
        config: the trial's configuration (as the loop got it: its params).
        checkpoint_dir: a folder holding the loop's ``model.pt`` (``{"model_state", "config", ...}``).
        task: the built-in task, unless ``user_parts`` supplies the data.
        user_parts: the sweep's own ``model`` / ``data`` / ``data_file`` (``Trainer.user_parts``, paths
            absolute); None or empty for a built-in task with a built-in model.
        split: ``test`` (read here, once) or ``val`` (recomputes what the trial reported).

    Returns:
        Every metric the loop reports for validation, renamed to ``split``; ``{}`` when the data has no
        such split.

    Raises:
        FileNotFoundError: no ``model.pt`` in ``checkpoint_dir``.
        ValueError: neither a task nor user data.
    """
    config = dict(config)
    data, build = _data_and_builder(config, task, user_parts or {})
    full = catalog.resolve(config)
    folds = int(full["folds"])
    if split == "val" and folds >= 2:  # each fold model against its own validation share
        pairs = [fold.split("val") for fold in data.folds(folds, int(full["split_seed"]))]
    else:
        pairs = [data.split(split)] * max(1, folds)
    if pairs[0] is None:
        return {}
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CHECKPOINT_FILE} in the checkpoint folder {checkpoint_dir}")
    device = pick_device()
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    states = checkpoint.get("fold_states") or [checkpoint["model_state"]]
    autocast, _ = precision_context(str(full["precision"]), device)
    make = build or (lambda cfg, shape, n: build_model(str(cfg["model"]), shape, n, cfg))
    scores = []
    for state, pair in zip(states, pairs, strict=False):
        assert pair is not None  # every fold shares the base data's splits
        module = make(full, data.input_shape, data.n_outputs).to(device)
        module.load_state_dict(state)
        scores.append(split_metrics(module, pair[0], pair[1], data, device, autocast, prefix=split))
    return combine_folds(scores)


def _data_and_builder(config: dict[str, Any], task: str | None,
                      user_parts: Mapping[str, Any]) -> tuple[TaskData, Any]:
    data, build = user_model_and_data(user_parts, config)
    if data is None:
        if task is None:
            raise ValueError("score_checkpoint needs a task name or user data (trainer.data / data_file)")
        data = load_task(task, config)
    return data, build
