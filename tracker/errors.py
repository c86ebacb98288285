"""The tracker's one exception: the tracking store cannot be reached, opened or read."""

from __future__ import annotations

__all__ = ["StoreUnavailable"]


class StoreUnavailable(Exception):
    """The tracking store cannot be reached, is not an MLflow store, or went away while being read.

    Raised by the writer (``tracker.mlflow_log.open_client``) and by every read (``tracker.queries``);
    the message names the store (without its password) and says what to do.
    """
