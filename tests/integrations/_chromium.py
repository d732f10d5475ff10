"""A real headless Chromium driven over the Chrome DevTools protocol, with the network off.

Debian's ``chromium`` (the noxfile's ``tests`` session installs it) is started with a fresh
profile and every background service disabled; the page may load ``file:`` and ``data:``
URLs only: any other request is failed by the ``Fetch`` domain and recorded in
:attr:`Browser.blocked`. Console errors, uncaught exceptions and error log entries are
collected in :attr:`Browser.errors`. The client is synchronous: a command's reply is read
from the socket, buffering the events that arrive before it.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import websocket

__all__ = ["Browser", "chromium_path"]

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--metrics-recording-only", "--mute-audio",
    # no name resolves and every connection goes to a closed port: nothing can leave the machine
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
    # WebGL without a GPU (plotly's parallel coordinates draw with WebGL)
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--window-size=1280,1600", "--remote-debugging-port=0",
]


def chromium_path() -> str:
    """The chromium executable; an error saying how to install it when missing."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium is not installed: run `apt-get update && apt-get install -y chromium` "
                       "(the noxfile's tests session does this)")


class Browser:
    """One headless Chromium process with one page attached."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        self._profile = tempfile.TemporaryDirectory(prefix="epochal-chromium-")
        self.process = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # its zygote, renderers and crash handler share one group, stopped together
        )
        try:
            self._socket = websocket.create_connection(self._endpoint(), timeout=timeout, suppress_origin=True)
            target = self._call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.call("Network.enable")
            self.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                      uploadThroughput=-1)
            self.call("Fetch.enable", patterns=[{"urlPattern": "*"}])
        except BaseException:
            self.close()
            raise

    def _endpoint(self) -> str:
        """The browser's websocket address, read from the line Chromium prints on stderr when it listens."""
        assert self.process.stderr is not None
        stream, seen, deadline = self.process.stderr.fileno(), b"", time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
            chunk = os.read(stream, 65536) if ready else b""
            if ready and not chunk:
                break  # chromium exited
            seen += chunk
            for line in seen.decode(errors="replace").splitlines():
                if line.startswith("DevTools listening on ") and line.strip().endswith(tuple("0123456789abcdef")):
                    # keep reading stderr so chromium never blocks on a full pipe
                    threading.Thread(target=lambda: all(iter(lambda: os.read(stream, 65536), b"")), daemon=True).start()
                    return line.split(" on ", 1)[1].strip()
        raise RuntimeError(f"chromium did not listen within {self.timeout:.0f} s:\n"
                           + seen.decode(errors="replace")[-2000:])

    # -- protocol --------------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._socket.send(json.dumps(message))
        return self._next_id

    def _receive(self) -> dict[str, Any]:
        message = json.loads(self._socket.recv())
        if "method" in message:
            self._observe(message)
        return message

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        wanted = self._send(method, params, session)
        while True:
            message = self._receive()
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command to the page and return its result."""
        return self._call(method, self._session, **params)

    def _observe(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if url.startswith(("file:", "data:", "blob:", "about:")):
                self._send("Fetch.continueRequest", {"requestId": params["requestId"]}, self._session)
            else:
                self.blocked.append(url)
                self._send("Fetch.failRequest", {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                           self._session)
            return
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        self._events.append(event)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Block until the page sends event ``method`` (or the socket times out)."""
        for index, event in enumerate(self._events):
            if event["method"] == method:
                return self._events.pop(index)
        while True:
            message = self._receive()
            if message.get("method") == method:
                self._events.remove(message)
                return message

    # -- page ------------------------------------------------------------------------------------
    def open(self, path: Path) -> None:
        """Load a local file and wait for its load event."""
        self._events.clear()
        self.call("Page.navigate", url=Path(path).absolute().as_uri())
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON-able data."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """A PNG of the whole page."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])

    def close(self) -> None:
        try:
            self._socket.close()
        except Exception:
            pass
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)  # helpers still writing into the profile would break its removal
        self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self._profile.cleanup()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
