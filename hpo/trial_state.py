"""A trial's resumable state as a file in Ray Tune's storage, so a trial re-run after a crash continues.

Why a file and not a Ray checkpoint: a trial's Ray checkpoint is its best epoch's weights, which the
sweep copies as ``best_checkpoint``; every epoch's state as a Ray checkpoint would replace it (or need two
per report), Ray copies and registers each checkpoint in the experiment's state (more per epoch than one
``torch.save``), and a resumed sweep runs a new Tune experiment (the store, not ``Tuner.restore``, is
the source of truth), so Ray would not hand the old trial's checkpoint to its re-run anyway.

The file lives at ``<storage>/trial_states/<sweep run id>/<key>.pt``, where the key is a hash of the
trial's full configuration as the store holds its params: the re-run of a killed trial has the same
configuration, so it finds the file from the stored params alone. It is written atomically (a temporary
file, then ``os.replace``) after each epoch's report, and read only by a re-run the driver asked for.
Storage shared by all nodes (as a multi-node cluster needs anyway) lets a re-run on another node find it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracker.params import param_text

log = logging.getLogger(__name__)

STATE_DIR = "trial_states"


def state_key(config: Mapping[str, Any]) -> str:
    """The key of a trial's state file: a hash of its full configuration as text (stored params match it)."""
    text = json.dumps(sorted((str(k), param_text(v)) for k, v in config.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def states_folder(storage: str, sweep_run_id: str) -> str:
    """Where a sweep's trials keep their states under Ray Tune's ``storage``."""
    return os.path.join(storage, STATE_DIR, sweep_run_id)


class FileState:
    """``trainers.loop.TrainState`` in ``folder/<key>.pt`` (+ ``<key>.best.pt``, the best epoch's checkpoint).

    Args:
        folder: the sweep's states folder (``states_folder``).
        key: the trial's ``state_key``.
        resume: load what the folder holds (a re-run of a killed trial); else start fresh and overwrite.
    """

    def __init__(self, folder: str, key: str, *, resume: bool) -> None:
        self.path = Path(folder) / f"{key}.pt"
        self.best_path = Path(folder) / f"{key}.best.pt"
        self.resume = resume
        self.resumed_epoch = 0  # the epoch the loaded snapshot ends with (0: started from scratch)
        self._broken = False

    def load(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        import torch

        if not self.resume or not self.path.exists():
            return None, None
        try:
            snapshot = torch.load(self.path, weights_only=True)
            best = torch.load(self.best_path, weights_only=True) if self.best_path.exists() else None
        except Exception:  # noqa: BLE001 - an unreadable state only costs the epochs it held: start over
            log.warning("cannot read the trial state %s; the trial starts from scratch", self.path, exc_info=True)
            return None, None
        self.resumed_epoch = int(snapshot.get("epoch", 0))
        return snapshot, best

    def save(self, snapshot: dict[str, Any], best_checkpoint: dict[str, Any] | None) -> None:
        if self._broken:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if best_checkpoint is not None:  # first: a snapshot never points past the best file it needs
                _atomic_save(best_checkpoint, self.best_path)
            _atomic_save(snapshot, self.path)
        except OSError as e:  # a full or read-only storage must not fail the trial: it only cannot resume
            self._broken = True
            log.warning("cannot save the trial state in %s (%s); a crash would re-run this trial from scratch",
                        self.path.parent, e)


def _atomic_save(payload: Any, path: Path) -> None:
    import torch

    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
