"""Hyperparameter search for PyTorch trainers: sweep files, search spaces, the Ray Tune runner, the CLI.

``import hpo`` is cheap: torch, Ray, MLflow and Streamlit load only when a sweep runs.
"""

from hpo.errors import ConfigError, HpoError, TrackingError

__all__ = ["ConfigError", "HpoError", "TrackingError"]
