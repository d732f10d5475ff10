"""An HTTP relay in front of a real MLflow server, for tests of who sends what and when.

It passes every request on unchanged and records each metric point of every ``log-batch``
the server acknowledged, so a test can count how often each point was *sent* (the server's
SQL store would silently keep one copy of an identical point sent twice). Given
``hold="runs/create"`` (an API path ending), the first such request waits until
:meth:`Gate.release`, and :attr:`Gate.held` is set when it arrives: the test knows that the
sender is at that point, mid-run, without sleeping. On :meth:`Gate.close` a request still
held is dropped unanswered (its sender may be dead by then).
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Gate"]

PASSED_HEADERS = ("content-type", "authorization")


class Gate:
    """The relay on 127.0.0.1 (:attr:`uri`) to ``upstream``; see the module docstring."""

    def __init__(self, upstream: str, hold: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold = hold
        self.held = threading.Event()
        self.points: list[tuple[str, str, int, int, Any]] = []  # (run_id, key, step, timestamp, value)
        self._release = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        gate = self

        class Relay(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                gate._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def sent(self, run_id: str | None = None) -> Counter:
        """How often each ``(key, step)`` of one MLflow run (or all) went through, acknowledged."""
        with self._lock:
            return Counter((key, step) for run, key, step, _, _ in self.points if run_id in (None, run))

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._closing = True
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        path = urlsplit(handler.path).path
        if self.hold and path.endswith(self.hold):
            with self._lock:
                first = not self.held.is_set()
                self.held.set()
            if first:
                self._release.wait(600)
                if self._closing:
                    handler.close_connection = True
                    return
        request = urllib.request.Request(self.upstream + handler.path, data=body, method=handler.command, headers={
            k: v for k, v in handler.headers.items() if k.lower() in PASSED_HEADERS})
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                status, data, kind = response.status, response.read(), response.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            status, data, kind = exc.code, exc.read(), exc.headers.get("Content-Type")
        if status == 200 and path.endswith("runs/log-batch") and body:
            batch = json.loads(body)
            with self._lock:
                self.points.extend((batch["run_id"], m["key"], int(m.get("step", 0)), int(m["timestamp"]), m["value"])
                                   for m in batch.get("metrics") or ())
        handler.send_response(status)
        handler.send_header("Content-Type", kind or "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
