"""The files of a trial's checkpoint folder: written on the trial's node, read back on the driver.

A trainer's checkpoint dict becomes ``model.pt``; its per-layer training signals (``trainers.signals``)
also a JSON file beside it, which the driver logs as the trial run's ``training_signals.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo import defaults
from hpo.trial_keys import CHECKPOINT_FILE, SIGNALS_KEY

SIGNALS_FILE = "training_signals.json"


def save_checkpoint(checkpoint: Mapping[str, Any], folder: str) -> None:
    """A trainer's checkpoint dict as ``model.pt`` in ``folder``, its per-layer signals as a JSON file beside."""
    import torch

    torch.save(dict(checkpoint), os.path.join(folder, CHECKPOINT_FILE))
    if checkpoint.get(SIGNALS_KEY):
        with open(os.path.join(folder, SIGNALS_FILE), "w", encoding="utf-8") as f:
            json.dump(checkpoint[SIGNALS_KEY], f, indent=1)


def checkpoint_json(checkpoint: Any, name: str) -> Any | None:
    """A JSON file of a trial's Ray checkpoint, read through its storage filesystem; None when absent.

    Under Ray Client the checkpoint lies in the cluster's storage, out of this filesystem's reach: the
    trial then goes without the file (its signals' metrics are stored all the same).
    """
    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):  # no such file (signals off, a user's own trainer), or not JSON
        return None


def kept_checkpoint(sweep: str, trial_id: str) -> Path | None:
    """The latest checkpoint folder this machine's Ray storage kept for trial ``trial_id`` of ``sweep`` (a
    trial that ran before a resume, whose record the store rebuilt without one), or None."""
    found = sorted(defaults.ray_storage().glob(f"{sweep}-*/*_{trial_id.removeprefix('stored:')}_*/checkpoint_*"))
    return found[-1] if found else None
