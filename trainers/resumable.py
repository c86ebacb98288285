"""What the built-in loop keeps at every epoch end so that a trial whose process died continues where it was.

A snapshot holds everything the next epoch depends on: each fold's weights, optimizer, LR schedule and
gradient scaler, the batch-order and augmentation generators, the global RNG (dropout, initialisation),
the early-stopping counters, the best epoch so far and every report sent. Restored, the loop first
reports the epochs it covers again, as they were (the best one with its checkpoint), so whoever listens
(Ray Tune, its scheduler, the driver) sees the sequence an uninterrupted run sends; then it trains on.
On CPU the continued run's numbers equal an uninterrupted run's to the bit (tests/hpo/test_resume.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

SNAPSHOT_VERSION = 1


class Progress:
    """Where a ``fit`` stands: the last epoch done, the best epoch so far, the reports sent, whether it stopped."""

    def __init__(self) -> None:
        self.epoch = 0
        self.best_epoch = 0
        self.best_metrics: dict[str, float] = {}
        self.stopped = False
        self.reports: list[dict[str, float]] = []

    @classmethod
    def resume(cls, state: Any, runs: Sequence[Any], stopper: Any, report: Callable[..., None]) -> Progress:
        """The progress ``state`` holds, restored into ``runs`` and ``stopper`` and reported again; a fresh
        one when it holds none (or one of another shape: another version, another number of folds)."""
        progress = cls()
        snapshot, best_checkpoint = state.load()
        if not snapshot or snapshot.get("version") != SNAPSHOT_VERSION or len(snapshot["runs"]) != len(runs):
            return progress
        for run, saved in zip(runs, snapshot["runs"], strict=True):
            _restore_run(run, saved)
        torch.set_rng_state(snapshot["rng"])
        if torch.cuda.is_available() and snapshot.get("cuda_rng"):
            torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
        stopper.best, stopper.waited = snapshot["patience"]
        progress.epoch, progress.stopped = int(snapshot["epoch"]), bool(snapshot["stopped"])
        progress.best_epoch, progress.best_metrics = int(snapshot["best_epoch"]), dict(snapshot["best_metrics"])
        progress.reports = [dict(r) for r in snapshot["reports"]]
        for number, metrics in enumerate(progress.reports, 1):
            report(dict(metrics), best_checkpoint if number == progress.best_epoch else None)
        return progress

    def save(
        self, state: Any, runs: Sequence[Any], stopper: Any, best: tuple[int, dict[str, float]],
        metrics: dict[str, float], checkpoint: dict[str, Any] | None, stopped: bool,
    ) -> None:
        """Record the epoch just reported and hand ``state`` the snapshot (``checkpoint`` when it improved)."""
        self.epoch, self.stopped = int(metrics["epoch"]), stopped
        self.best_epoch, self.best_metrics = best
        self.reports.append(dict(metrics))
        snapshot = {
            "version": SNAPSHOT_VERSION, "epoch": self.epoch, "stopped": stopped, "best_epoch": self.best_epoch,
            "best_metrics": dict(self.best_metrics), "reports": self.reports,
            "runs": [_run_state(run) for run in runs], "patience": (stopper.best, stopper.waited),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        state.save(snapshot, checkpoint)


def _run_state(run: Any) -> dict[str, Any]:
    return {
        "model": run.module.state_dict(), "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(), "scaler": run.scaler.state_dict(),
        "shuffle": run.shuffle.get_state(), "augment": run.augment.generator.get_state(),
    }


def _restore_run(run: Any, saved: dict[str, Any]) -> None:
    run.module.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["schedule"])
    if saved["scaler"]:
        run.scaler.load_state_dict(saved["scaler"])
    run.shuffle.set_state(saved["shuffle"])
    run.augment.generator.set_state(saved["augment"])
    run.signals.continued()  # its init_* signals were reported with epoch 1, before the crash
