"""Tracking: the MLflow writer (``tracker.mlflow_log``), bulk reads (``tracker.queries``), the shared
names (``tracker.schema``) and the learning-curve diagnosis (``tracker.diagnosis``, pure numpy).

Nothing heavy is imported here: ``import tracker`` loads neither MLflow nor pandas.
"""

from tracker import schema

__all__ = ["schema"]
