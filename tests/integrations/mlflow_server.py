"""A real MLflow tracking server for tests and benchmarks, from a virtual environment of its own.

The full ``mlflow`` package pins versions that clash with the training frameworks, so it
lives in its own venv: ``$EPOCHAL_MLFLOW_SERVER_VENV``, else
``${XDG_CACHE_HOME:-~/.cache}/epochal/mlflow-server``, created once (under a file lock, so
parallel sessions share it) and reused while it works. The server runs as
``mlflow server --host 127.0.0.1 --port <free> --backend-store-uri sqlite:///...
--artifacts-destination ...``; readiness is its ``/health`` endpoint answering.
Runs are read back with ``MlflowClient`` from that same venv (``mlflow_readback.py``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["MLFLOW_SPEC", "server_venv", "MlflowServer", "free_port"]

MLFLOW_SPEC = "mlflow>=2.16"
HERE = Path(__file__).resolve().parent
READY_MARK = ".epochal-ready"


def _venv_dir() -> Path:
    if os.environ.get("EPOCHAL_MLFLOW_SERVER_VENV"):
        return Path(os.environ["EPOCHAL_MLFLOW_SERVER_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "epochal" / "mlflow-server"


def server_venv() -> Path:
    """The python of the server's venv, made (pip install mlflow) on first use."""
    venv = _venv_dir()
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it
        if (venv / READY_MARK).exists() and python.exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", MLFLOW_SPEC], check=True,
                       stdout=subprocess.DEVNULL)
        (venv / READY_MARK).write_text(MLFLOW_SPEC + "\n")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite store and proxied artifacts under ``folder``; stop/start keep both."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.python = server_venv()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "server.log"

    def start(self, timeout: float = 180.0) -> MlflowServer:
        env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "PYTHONWARNINGS": "ignore"}
        for name in ("MLFLOW_TRACKING_URI", "EPOCHAL_MLFLOW_URI", "MLFLOW_TRACKING_TOKEN"):
            env.pop(name, None)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                 "--artifacts-destination", str(self.folder / "artifacts")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)  # polling the health endpoint, not waiting blindly
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(5)  # sqlite commits every request: no need for a slow graceful stop
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)
        self.process = None

    def read_run(self, epochal_id: str, project: str = "default", artifacts: bool = True) -> dict[str, Any]:
        """The MLflow run mirroring epochal run ``epochal_id``, read back with ``MlflowClient``.

        ``{"info": {...}, "params": {...}, "tags": {...}, "metrics": {key: [[step, timestamp, value], ...]},
        "artifacts": {path: sha256}}``, or ``{}`` when there is no such run.
        """
        out = subprocess.run(
            [str(self.python), str(HERE / "mlflow_readback.py"), self.uri, project, epochal_id,
             "1" if artifacts else "0"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode != 0:
            raise RuntimeError(f"reading back run {epochal_id} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
