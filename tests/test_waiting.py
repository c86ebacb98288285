"""tests/waiting.py: what the suite's one wait helper returns, and how it fails."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from waiting import WaitTimeout, http_body, wait_until


def test_returns_the_first_truthy_result() -> None:
    results: Iterator[object] = iter([None, 0, "", [], 3, 4])
    assert wait_until(lambda: next(results), 60, interval_s=0) == 3


def test_says_what_never_happened() -> None:
    with pytest.raises(WaitTimeout, match=r"the answer: not within 0.05 s \(last result: 0\)"):
        wait_until(lambda: 0, 0.05, interval_s=0.01, message="the answer")
    with pytest.raises(AssertionError, match=r"^late: "):  # a test failure, and the message said when failing
        wait_until(lambda: False, 0, message=lambda: "late")


def test_stops_waiting_when_the_process_has_exited() -> None:
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    done.wait()
    with pytest.raises(WaitTimeout, match=r"server up: the process exited with 3 first"):
        wait_until(lambda: False, 600, message="server up", process=done)


def test_an_exception_in_the_predicate_passes_through_at_once() -> None:
    def broken() -> bool:
        raise KeyError("no such thing")

    with pytest.raises(KeyError, match="no such thing"):
        wait_until(broken, 600)


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        status = 200 if self.path == "/ok" else 503
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_body_is_the_answer_or_none(server: str) -> None:
    assert http_body(server + "/ok") == b"hello"
    assert http_body(server + "/unwell") is None  # an error status is no answer yet
    assert http_body("http://127.0.0.1:1/") is None  # nothing listens
