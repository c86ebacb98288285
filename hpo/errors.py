"""The project's exception tree: every error a user can cause is a ``ConfigError``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tracker.errors import StoreUnavailable


class HpoError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(HpoError):
    """Bad input: a sweep file, a flag or a referenced function is wrong. Exit code 2.

    Args:
        message: what rule was broken, what was given and what is allowed.
        source: the file (or flag) the value came from, if any.
        field: dotted path of the offending field, if any.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.field) if part)
        return f"{where}: {self.message}" if where else self.message


class TrackingError(HpoError):
    """The tracking store cannot be reached or written."""


@contextlib.contextmanager
def tracking_errors() -> Iterator[None]:
    """Re-raise the tracker's ``StoreUnavailable`` as our ``TrackingError``: the one place the two meet.

    Raises:
        TrackingError: the store cannot be reached, opened or read; the message is the tracker's.
    """
    try:
        yield
    except StoreUnavailable as e:
        raise TrackingError(str(e)) from e


class ClusterError(HpoError):
    """The Ray cluster named by ``ray.address`` / ``--ray-address`` cannot be reached. Exit code 2."""
