"""Learning-curve diagnosis: overfitting, underfitting, good fit or diverged, with evidence and advice.

Pure Python + numpy: importing it loads neither Ray, torch, MLflow, pandas nor Streamlit, so
``hpo diagnose`` and the dashboard use it as cheaply as the runner does.

- ``diagnose_trial`` is the one path for a trial (the runner at trial end, ``hpo diagnose RUN_ID``, the
  dashboard); ``diagnose_stored_trial`` and ``diagnose_trial_row`` feed it from what the store holds.
- ``diagnose`` judges bare curves (``hpo diagnose --history FILE``); ``summarize_sweep`` finds the
  settings that drive the verdicts across a sweep.
- the findings from inside training (``INTERNAL_FINDINGS``) come from the ``signals/*`` series the built-in
  loop logs (``hpo.diagnosis._internals``), added to the curves' diagnosis on the same path.
- ``read_history_file`` reads the ``--history`` file format, series and context (:mod:`hpo.diagnosis.history`).

The rules and their measured accuracy: docs/diagnosis.md.
"""

from hpo.diagnosis._internals import FINDINGS as INTERNAL_FINDINGS
from hpo.diagnosis._sweep import SweepSummary
from hpo.diagnosis._trial import (
    CURVE_KEYS,
    StoredTrial,
    diagnose_stored_trial,
    diagnose_trial,
    diagnose_trial_row,
    task_classes,
    task_val_size,
)
from hpo.diagnosis._verdict import INSUFFICIENT_DATA, VERDICTS, Diagnosis, diagnose, summarize_sweep
from hpo.diagnosis.history import HistoryFile, HistoryFileError, load_history_file, read_history_file

__all__ = [
    "CURVE_KEYS",
    "INSUFFICIENT_DATA",
    "INTERNAL_FINDINGS",
    "VERDICTS",
    "Diagnosis",
    "HistoryFile",
    "HistoryFileError",
    "StoredTrial",
    "SweepSummary",
    "diagnose",
    "diagnose_stored_trial",
    "diagnose_trial",
    "diagnose_trial_row",
    "load_history_file",
    "read_history_file",
    "summarize_sweep",
    "task_classes",
    "task_val_size",
]
