"""A small client of MLflow's REST API (``/api/2.0/mlflow``), over ``requests``: no mlflow import.

One attempt per call, with timeouts; the callers decide when to try again (the live
mirror backs off without blocking its lane, ``epochal sync`` waits and retries).
Errors come in three kinds:

- :class:`ServerUnavailable`: connection refused or reset, a timeout, a 5xx or 429 answer.
  Nothing was (knowingly) stored; try again later.
- :class:`RecordRejected`: a 4xx answer about the request itself (a bad name or value).
  Retrying the same request can never succeed: map the record or skip it.
- :class:`NotAnMlflowServer`: the URI answers, but not as an MLflow tracking server does.

Credentials are read from the environment the way MLflow's own client reads them
(``MLFLOW_TRACKING_TOKEN``, else ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``),
live only in the session's headers and never appear in an error, a log line or a file.
TLS certificates are verified unless ``MLFLOW_TRACKING_INSECURE_TLS=true``
(``MLFLOW_TRACKING_SERVER_CERT_PATH`` names a CA bundle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from ..redact import redact_url

__all__ = [
    "MlflowRest", "MlflowError", "ServerUnavailable", "RecordRejected", "NotAnMlflowServer",
    "INSTALL_HINT", "display_uri", "resolve_uri",
]

INSTALL_HINT = "pip install 'epochal[mlflow]'"
API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
_TRUE = ("1", "true", "yes", "on")


class MlflowError(Exception):
    """Something went wrong talking to an MLflow server (the message names the server, never a secret)."""


class ServerUnavailable(MlflowError):
    """The server could not take the request now (down, slow, 5xx, 429): try again later."""


class RecordRejected(MlflowError):
    """The server refused this request for its content (4xx): retrying it cannot succeed."""

    def __init__(self, message: str, status: int, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class NotAnMlflowServer(MlflowError):
    """The URI answers, but not like an MLflow tracking server."""


def resolve_uri(uri: str | None = None) -> str | None:
    """The tracking server: ``uri``, else ``EPOCHAL_MLFLOW_URI``, else ``MLFLOW_TRACKING_URI``."""
    return uri or os.environ.get("EPOCHAL_MLFLOW_URI") or os.environ.get("MLFLOW_TRACKING_URI") or None


def display_uri(uri: str) -> str:
    """The URI as it may be shown or stored: credentials removed, no trailing slash."""
    parts = urlsplit(uri.strip())
    if parts.username is None and parts.password is None:
        return redact_url(uri.strip()).rstrip("/")
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")).rstrip("/")


def _requests() -> Any:
    try:
        import requests
    except ImportError as exc:
        raise ImportError(f"the MLflow mirror needs the requests package: {INSTALL_HINT}") from exc
    return requests


class MlflowRest:
    """Calls one MLflow tracking server. ``requests_sent`` counts the HTTP requests made."""

    def __init__(self, uri: str, timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
        parts = urlsplit(uri.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"MLflow tracking URI {display_uri(uri)!r} is not an http(s) server address; start a server "
                "(`mlflow server --host 127.0.0.1 --port 5000`) and pass its URL, e.g. http://127.0.0.1:5000"
            )
        requests = _requests()
        self.uri = display_uri(uri)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.requests_sent = 0
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies or netrc: the server is named explicitly
        env = os.environ
        if env.get("MLFLOW_TRACKING_TOKEN"):
            self._session.headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
            self._session.auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        elif parts.username:
            self._session.auth = (parts.username, parts.password or "")
        if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in _TRUE:
            self._session.verify = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            self._session.verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        self._session.headers["User-Agent"] = "epochal-mlflow-mirror"

    def close(self) -> None:
        self._session.close()

    # -- transport -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        requests = _requests()
        wait = self.timeout if timeout is None else max(0.1, timeout)
        self.requests_sent += 1
        try:
            response = self._session.request(
                method, self._base + path, timeout=(min(self.connect_timeout, wait), wait), **kwargs)
        except requests.exceptions.SSLError as exc:
            raise NotAnMlflowServer(
                f"TLS with MLflow server {self.uri} failed ({type(exc).__name__}); pass a CA bundle in "
                "MLFLOW_TRACKING_SERVER_CERT_PATH, or set MLFLOW_TRACKING_INSECURE_TLS=true to skip verification"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ServerUnavailable(f"MLflow server {self.uri} is unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if status >= 500 or status == 429:
            raise ServerUnavailable(f"MLflow server {self.uri} answered {status} to {method} {path.split('?')[0]}")
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = None
        if status >= 400:
            code = body.get("error_code") if isinstance(body, dict) else None
            if status in (401, 403):
                raise NotAnMlflowServer(
                    f"MLflow server {self.uri} refused the credentials ({status}); set MLFLOW_TRACKING_TOKEN or "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
            if code is None:  # an MLflow server always names its error
                raise NotAnMlflowServer(
                    f"{self.uri} answered {status} to {method} {path.split('?')[0]} without an MLflow error; is it "
                    "an MLflow tracking server (`mlflow server`)?")
            message = str((body or {}).get("message", ""))[:300]
            raise RecordRejected(f"MLflow server {self.uri} rejected {path.split('?')[0]}: {code}: {message}",
                                 status, code)
        if not isinstance(body, dict):
            raise NotAnMlflowServer(f"{self.uri} did not answer {path.split('?')[0]} with JSON; is it an MLflow "
                                    "tracking server (`mlflow server`)?")
        return body

    def call(self, endpoint: str, payload: Mapping[str, Any] | None = None, *, method: str = "POST",
             timeout: float | None = None) -> dict[str, Any]:
        """``POST /api/2.0/mlflow/<endpoint>`` with a JSON body (``GET`` with query parameters)."""
        if method == "GET":
            return self._request("GET", f"{API}/{endpoint}", params=dict(payload or {}), timeout=timeout)
        data = json.dumps(payload or {}, separators=(",", ":"))
        return self._request(method, f"{API}/{endpoint}", data=data, timeout=timeout,
                             headers={"Content-Type": "application/json"})

    # -- the calls the mirror makes ---------------------------------------------------------------
    def experiment_id(self, name: str, *, timeout: float | None = None) -> str:
        """The id of experiment ``name``, created when missing."""
        try:
            found = self.call("experiments/get-by-name", {"experiment_name": name}, method="GET", timeout=timeout)
        except RecordRejected as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        else:
            experiment = found.get("experiment")
            if not isinstance(experiment, dict) or "experiment_id" not in experiment:
                raise NotAnMlflowServer(f"{self.uri} answered experiments/get-by-name without an experiment; is it "
                                        "an MLflow tracking server (`mlflow server`)?")
            if experiment.get("lifecycle_stage") == "deleted":
                raise RecordRejected(
                    f"experiment {name!r} on {self.uri} is deleted; restore it (`mlflow experiments restore`) or "
                    "use another project name", 400, "INVALID_STATE")
            return str(experiment["experiment_id"])
        try:
            return str(self.call("experiments/create", {"name": name}, timeout=timeout)["experiment_id"])
        except RecordRejected as exc:  # created meanwhile by another process
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.experiment_id(name, timeout=timeout)

    def create_run(self, experiment_id: str, name: str, start_ms: int, tags: list[dict[str, str]],
                   *, timeout: float | None = None) -> dict[str, Any]:
        """A new run; returns its ``info`` (``run_id``, ``artifact_uri``, ...)."""
        body = self.call("runs/create", {"experiment_id": experiment_id, "run_name": name, "start_time": start_ms,
                                         "tags": tags}, timeout=timeout)
        return body["run"]["info"]

    def log_batch(self, run_id: str, metrics: Sequence[dict[str, Any]] = (), params: Sequence[dict[str, str]] = (),
                  tags: Sequence[dict[str, str]] = (), *, timeout: float | None = None) -> None:
        payload: dict[str, Any] = {"run_id": run_id}
        if metrics:
            payload["metrics"] = list(metrics)
        if params:
            payload["params"] = list(params)
        if tags:
            payload["tags"] = list(tags)
        self.call("runs/log-batch", payload, timeout=timeout)

    def update_run(self, run_id: str, status: str, end_ms: int | None = None, *, timeout: float | None = None) -> None:
        payload: dict[str, Any] = {"run_id": run_id, "status": status}
        if end_ms is not None:
            payload["end_time"] = end_ms
        self.call("runs/update", payload, timeout=timeout)

    def upload(self, artifact_path: str, file: Path | bytes, *, timeout: float | None = None) -> None:
        """Upload ``file`` (or these bytes) through the server's artifact proxy to ``artifact_path``
        (``<exp>/<run>/artifacts/...``)."""
        if isinstance(file, bytes):
            self._request("PUT", f"{ARTIFACTS_API}/{quote(artifact_path)}", data=file, timeout=timeout)
            return
        with open(file, "rb") as handle:
            self._request("PUT", f"{ARTIFACTS_API}/{quote(artifact_path)}", data=handle, timeout=timeout)
