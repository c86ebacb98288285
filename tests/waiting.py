"""Waiting in tests: poll a condition until it holds, or fail saying what never happened.

Every test folder imports it as a top-level module (pytest puts ``tests/`` on the path through the
root conftest), as it does ``sweep_reads``. The timeout is a bound on a hang, not an assertion on
speed: pick it generously, since a busy CI machine starts servers many times slower than a laptop.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What was awaited did not happen (an AssertionError, so pytest reports a failure, not an error)."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout_s: float,
    *,
    interval_s: float = 0.2,
    message: str | Callable[[], str] = "condition",
    process: subprocess.Popen[Any] | None = None,
) -> T:
    """Call ``predicate`` every ``interval_s`` seconds until it returns something truthy; return that.

    An exception raised by ``predicate`` passes through at once: raise there when waiting longer
    cannot help.

    Args:
        predicate: the condition; its truthy result is returned (a response body, a count, True).
        timeout_s: give up after this long (a bound on a hang, not a speed requirement).
        interval_s: pause between calls.
        message: what was awaited ("mlflow server answers /health"), or a function that says it at
            failure time (to add a log that only then is complete).
        process: stop waiting, failing, as soon as this process has exited (the server being awaited
            died: waiting longer cannot help).

    Returns:
        The first truthy result of ``predicate``.

    Raises:
        WaitTimeout: ``predicate`` stayed falsy for ``timeout_s`` seconds, or ``process`` exited first;
            says ``message`` and the last result.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise WaitTimeout(f"{_say(message)}: the process exited with {process.returncode} first")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{_say(message)}: not within {timeout_s:g} s (last result: {result!r})")
        time.sleep(interval_s)


def http_body(url: str, timeout_s: float = 2) -> bytes | None:
    """The body ``url`` answers with (status 2xx), or None while nothing answers there (a predicate for
    ``wait_until``; an empty body reads as no answer yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bytes(response.read()) or None
    except OSError:  # refused, reset, timed out, or an HTTP error status (HTTPError is an OSError)
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _say(message: str | Callable[[], str]) -> str:
    return message if isinstance(message, str) else message()
