"""Tracking: the MLflow writer (``tracker.mlflow_log``), bulk reads (``tracker.queries`` over the
``tracker._backend.ReadBackend`` interface), the run schema (``tracker.schema``), which store to use
(``tracker.uri``) and the one "store unavailable" error (``tracker.errors``).

Nothing heavy is imported here: ``import tracker`` loads neither MLflow nor pandas.
"""

from tracker import schema
from tracker.errors import StoreUnavailable

__all__ = ["StoreUnavailable", "schema"]
