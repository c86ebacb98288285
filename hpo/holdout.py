"""The held-out test split, read once, after the search: the winner's checkpoint scored on test.

The search selects on validation only; trials never read the test split (``trainers.data.HeldOut``
materialises it on first use, and only ``trainers.evaluate.score_checkpoint`` uses it). After the
search, :func:`score_winner` scores the winner's best checkpoint on test and logs ``test_<name>``
metrics on its trial run and on the sweep run, through the sweep's journaled logger. Other stages
(seed confirmation) score their runs with :func:`score_on_test`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from hpo.config import SweepConfig
from hpo.trial_keys import CHECKPOINT_FILE
from tracker import schema

log = logging.getLogger(__name__)

NO_TEST_SPLIT = "no test split: no test estimate"
OWN_LOOP = ("your own train(config, report) function: hpo does not know its checkpoints, so there is no test "
            "estimate")


class MetricsLog(Protocol):
    """Where test metrics go: the sweep's ``tracker.mlflow_log.SweepLogger`` (journaled)."""

    parent_run_id: str

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None: ...

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...


@dataclass(frozen=True)
class Holdout:
    """What scoring a sweep's checkpoints needs: how its trials built data and model, and where metrics go.

    Attributes:
        task: the built-in task, unless ``user_parts`` supplies the data.
        user_parts: ``Trainer.user_parts`` with absolute paths (``hpo.trainable.pinned_user_parts``).
        logger: the sweep's logger; metrics are logged on each scored run through it.
        cpu, gpu: what the one scoring task asks Ray for (one trial's resources).
    """

    task: str | None
    user_parts: Mapping[str, str]
    logger: MetricsLog
    cpu: float = 1.0
    gpu: float = 0.0

    @classmethod
    def of(cls, config: SweepConfig, logger: MetricsLog) -> Holdout:
        from hpo.trainable import pinned_user_parts

        return cls(config.trainer.task, pinned_user_parts(config.trainer.user_parts), logger,
                   cpu=config.resources.cpu, gpu=config.resources.gpu)


def no_estimate_reason(config: SweepConfig) -> str | None:
    """Why the sweep cannot get a test estimate, known before it runs; None when its winner is scored.

    (A ``trainer.data`` function that returns four arrays is found out when the winner is scored.)
    """
    trainer = config.trainer
    if trainer.function is not None:
        return OWN_LOOP
    if trainer.data_file is not None and trainer.test_file is None and "test_fraction" not in trainer.options:
        return NO_TEST_SPLIT
    return None


def score_on_test(sweep: Holdout, runs: Sequence[tuple[str, Mapping[str, Any], Any]]) -> dict[str, dict[str, float]]:
    """Score each run's checkpoint on the test split in one Ray task; log the metrics onto each run.

    Needs a Ray session (the driver's). The checkpoints are read here and travel with the task, so it
    runs on any node of a cluster.

    Args:
        sweep: how the runs were trained and where their metrics go.
        runs: ``(run_id, trial_config, checkpoint)`` each; the checkpoint is a folder holding ``model.pt``
            or a ``ray.tune.Checkpoint``.

    Returns:
        ``{run_id: {"test_accuracy": ..., "test_loss": ..., ...}}``; ``{}`` for a run when the data has no
        test split.
    """
    import ray

    if not ray.is_initialized():  # ray.remote would start or join whatever cluster it finds: not ours to pick
        raise RuntimeError("score_on_test runs in the sweep's Ray session: call it after ray.init()")
    payload = [(run_id, dict(config), _checkpoint_bytes(checkpoint)) for run_id, config, checkpoint in runs]
    task = ray.remote(num_cpus=sweep.cpu, num_gpus=sweep.gpu, max_retries=0)(_score_all)
    scores: dict[str, dict[str, float]] = ray.get(
        task.remote(sweep.task, dict(sweep.user_parts), payload, max(1, int(sweep.cpu))))
    for run_id, metrics in scores.items():
        sweep.logger.log_metrics(run_id, metrics, step=0)
    return scores


def score_winner(config: SweepConfig, logger: MetricsLog, best: Any, *, searched: bool = True,
                 stream: TextIO | None = None) -> str | None:
    """Score the winner (a ``TrialRecord``) on test once; its ``test_metrics`` are set and logged on its run
    and on the sweep run. Returns why there is no test estimate, or None when there is one (tagged
    ``hpo.test_note`` on the sweep run). ``searched``: the search ended normally (else nothing is scored);
    ``stream``: where to say that scoring runs (it takes a few seconds: a fresh process loads torch)."""
    if not searched:
        note: str | None = "the search did not finish: no test estimate"
    else:
        if stream is not None and getattr(best, "checkpoint", None) is not None and no_estimate_reason(config) is None:
            print(f"scoring the winner (trial {best.number}) on the test split, once", file=stream, flush=True)
        note = _score_winner(config, logger, best)
    # always written: a resumed sweep that scores its winner clears the note an interrupted run left
    logger.set_tags(logger.parent_run_id, {schema.TEST_NOTE: note or ""})
    return note


def _score_winner(config: SweepConfig, logger: MetricsLog, best: Any) -> str | None:
    reason = no_estimate_reason(config)
    if reason is not None or best is None:
        return reason or "no trial finished: no test estimate"
    if best.checkpoint is None:
        return "the winner's checkpoint is not at hand (it ran before a resume): no new test estimate"
    try:
        scores = score_on_test(Holdout.of(config, logger), [(best.run_id, best.config, best.checkpoint)])
    except Exception as e:  # noqa: BLE001 - the search's results stand without a test figure: say why
        log.exception("scoring the winner on the test split failed")
        return f"scoring the winner on the test split failed ({type(e).__name__}: {e}): no test estimate"
    metrics = scores.get(best.run_id) or {}
    if not metrics:
        return NO_TEST_SPLIT
    best.test_metrics = metrics
    logger.log_metrics(logger.parent_run_id, metrics, step=0)
    return None


def _checkpoint_bytes(checkpoint: Any) -> bytes:
    """The ``model.pt`` of a checkpoint folder or a Ray checkpoint (copied off the cluster under Ray Client)."""
    if not hasattr(checkpoint, "to_directory"):  # a folder (a Ray Checkpoint claims os.PathLike, but refuses)
        return (Path(checkpoint) / CHECKPOINT_FILE).read_bytes()
    from hpo.relay import client_connected, fetch_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        local = fetch_checkpoint(checkpoint, folder) if client_connected() else checkpoint.to_directory(folder)
        return (Path(local) / CHECKPOINT_FILE).read_bytes()


def _score_all(task: str | None, user_parts: dict[str, str], payload: list[tuple[str, dict[str, Any], bytes]],
               threads: int) -> dict[str, dict[str, float]]:
    """The Ray task: each checkpoint scored on test by ``trainers.evaluate.score_checkpoint``."""
    import torch

    from trainers.evaluate import score_checkpoint

    torch.set_num_threads(threads)
    scores = {}
    for run_id, config, data in payload:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / CHECKPOINT_FILE).write_bytes(data)
            scores[run_id] = score_checkpoint(config, folder, task=task, user_parts=user_parts, split="test")
    return scores
