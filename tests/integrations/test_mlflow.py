"""The MLflow mirror against a real ``mlflow server`` (its own venv, sqlite store, proxied artifacts).

Everything is read back with ``MlflowClient`` from the server's venv: params, every metric
point at its step, tags, status and artifact bytes. The server is slow on a loaded 2-core
machine (about 100 points per second into sqlite), so the runs here are small.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import epochal
from epochal import sync as sync_module
from epochal.cli import main as cli
from epochal.sinks.mlflow_mapping import MAX_KEY, MAX_PARAM_VALUE, TRUNCATED, NameMapper, chunks, truncate
from epochal.sinks.mlflow_mirror import CURSOR_FILE, Mirror
from epochal.sinks.mlflow_rest import MlflowRest
from epochal.store import read_json, read_metrics
from mlflow_server import MlflowServer

SECRET = "tok-SECRETsecret-98765"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real MLflow server for the whole session (started from its own venv)."""
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    MlflowRest(srv.uri).experiment_id("Default")  # the first request of a fresh server is the slowest
    yield srv
    srv.stop()


@pytest.fixture
def mirrored(server, monkeypatch):
    """Runs of this test mirror live into ``server`` and give it time to catch up at the end."""
    monkeypatch.setenv("EPOCHAL_SINKS", "mlflow")
    monkeypatch.setenv("EPOCHAL_MLFLOW_URI", server.uri)
    monkeypatch.setenv("EPOCHAL_MLFLOW_FINISH_TIMEOUT", "240")
    monkeypatch.setenv("EPOCHAL_MLFLOW_INIT_TIMEOUT", "120")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return server


def points(run_dir: Path) -> dict[str, list[tuple[int, int, float]]]:
    """Every stored point of a run as MLflow should hold it: key -> sorted [(step, ms, value)]."""
    out: dict[str, list] = {}
    for record in read_metrics(run_dir)[0]:
        for key, value in record.items():
            if key not in ("step", "time", "epoch"):
                out.setdefault(key, []).append([record["step"], int(round(record["time"] * 1000)), value])
    return {k: sorted(v) for k, v in out.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(run, steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        run.log({"train/loss": 1.0 / (step + 1), "acc@top1": step / 1000}, step=step)


# -- unit tests of the mapping (no server) ------------------------------------------------------------
def test_names_mlflow_refuses_are_mapped_stably_and_without_collisions():
    mapper = NameMapper()
    assert mapper("train/loss") == "train/loss" and mapper("a b:c-d.e_f") == "a b:c-d.e_f"
    assert mapper("acc@top1") == "acc_top1"
    assert mapper("a//b") == "a/b" and mapper("a/b").startswith("a/b-")  # never two names on one key
    assert mapper("./x") == "_/x" and mapper("/abs") == "abs" and mapper("../up") == "__/up"
    long = "x" * 300
    assert len(mapper(long)) <= MAX_KEY and mapper(long) != mapper("x" * 301)
    again = NameMapper(mapper.mapped)
    assert all(again(name) == key for name, key in mapper.mapped.items())


def test_values_are_truncated_with_a_marker_and_batches_honour_the_limits():
    assert truncate("abc", 10) == "abc"
    cut = truncate("x" * 7000, MAX_PARAM_VALUE)
    assert len(cut) == MAX_PARAM_VALUE and cut.endswith(TRUNCATED)
    items = [{"key": f"k{i}", "value": "v" * 9000} for i in range(250)]
    batches = list(chunks(items, 100))
    assert sum(map(len, batches)) == 250 and all(len(b) <= 100 for b in batches)
    assert all(len(json.dumps(b)) < 1_000_000 for b in batches)
    assert [len(b) for b in chunks([{"k": i} for i in range(2500)], 1000)] == [1000, 1000, 500]


def test_credentials_and_tls_are_read_as_mlflows_client_reads_them(monkeypatch):
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                 "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    plain = MlflowRest("https://mlflow.example:8443/")
    assert plain._session.verify is True and "Authorization" not in plain._session.headers
    assert plain.uri == "https://mlflow.example:8443"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    basic = MlflowRest(f"https://bob:{SECRET}@mlflow.example")
    assert basic._session.auth == ("ann", SECRET) and basic._session.verify is False
    assert SECRET not in basic.uri and "bob" not in basic.uri  # what is shown and stored as the server's name
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", SECRET)
    assert MlflowRest("http://h:5000")._session.headers["Authorization"] == f"Bearer {SECRET}"
    with pytest.raises(ValueError, match="http"):
        MlflowRest("file:///tmp/mlruns")


# -- live mirror ---------------------------------------------------------------------------------------
def test_live_mirror_reads_back_params_points_tags_status_and_artifact_bytes(mirrored, tmp_path):
    config = {"lr": 0.1, "model": {"depth": 3, "act": "relu"}, "bad key!": "x" * 7000, "none": None}
    run = epochal.init(project="live", name="first", config=config, tags=["baseline"], notes="hello",
                       system_interval=0, finish_timeout=300)
    assert run.metadata["mlflow"]["uri"] == mirrored.uri  # the MLflow run id is in run.json at once
    train(run, 600)
    run.log({"val/acc": float("nan")}, step=3)
    run.log_system({"cpu/percent": 12.5})
    run.log_system({"cpu/percent": 25.0})
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(50_000))
    version = run.log_artifact(weights, name="model").version
    run.set_alias("model", version, "best")
    run.config["lr"] = 0.2  # params are immutable in MLflow: the change becomes a tag
    run.summary["best"] = 0.5
    run.finish()

    got = mirrored.read_run(run.id, "live")
    assert got["runs_found"] == 1
    assert got["info"]["status"] == "FINISHED" and got["info"]["run_name"] == "first"
    assert got["info"]["run_id"] == read_json(run.dir / "run.json")["mlflow"]["run_id"]
    assert got["params"]["lr"] == "0.1" and got["params"]["model.depth"] == "3"
    assert got["params"]["model.act"] == "relu" and got["params"]["none"] == "None"
    assert got["params"]["bad key_"].endswith(TRUNCATED) and len(got["params"]["bad key_"]) == MAX_PARAM_VALUE
    tags = got["tags"]
    assert tags["epochal.config.lr"] == "0.2"
    assert tags["epochal.run_id"] == run.id and tags["epochal.project"] == "live" and tags["baseline"] == "true"
    assert tags["mlflow.note.content"] == "hello" and tags["epochal.host"]
    assert json.loads(tags["epochal.name_map"]) == {"acc@top1": "acc_top1", "bad key!": "bad key_"}
    expected = points(run.dir)
    stored = got["metrics"]
    assert stored["train/loss"] == expected["train/loss"]  # every point, at its step, with its wall time
    assert stored["acc_top1"] == expected["acc@top1"]
    assert len(stored["val/acc"]) == 1 and stored["val/acc"][0][0] == 3 and stored["val/acc"][0][2] != stored["val/acc"][0][2]
    assert [p[0] for p in stored["system/cpu/percent"]] == [0, 1]
    assert [p[2] for p in stored["system/cpu/percent"]] == [12.5, 25.0]
    assert [p[2] for p in stored["best"]] == [0.5]  # a summary value never logged becomes a metric
    assert got["artifacts"] == {f"model/{version}/weights.bin": sha256(weights)}
    assert tags["epochal.artifact.model.latest"] == tags["epochal.artifact.model.best"] == version
    cursor = read_json(run.dir / CURSOR_FILE)["servers"][mirrored.uri]
    assert cursor["status"] == "FINISHED" and cursor["artifacts"] == [f"model:{version}"]
    assert "mlflow" not in sys.modules  # the mirror speaks REST; mlflow is never imported


def test_a_resumed_run_continues_its_mlflow_run(mirrored):
    run = epochal.init(project="again", id="job-7", system_interval=0, finish_timeout=300)
    train(run, 100)
    run.finish()
    first = read_json(run.dir / "run.json")["mlflow"]["run_id"]
    run = epochal.init(project="again", id="job-7", resume=True, system_interval=0, finish_timeout=300)
    assert run.metadata["mlflow"]["run_id"] == first
    train(run, 100, start=100)
    run.finish()
    got = mirrored.read_run("job-7", "again", artifacts=False)
    assert got["runs_found"] == 1 and got["info"]["run_id"] == first and got["info"]["status"] == "FINISHED"
    assert got["metrics"]["train/loss"] == points(run.dir)["train/loss"] and len(got["metrics"]["train/loss"]) == 200


def test_unreachable_server_warns_once_at_init_and_sync_sends_the_run_later(server, monkeypatch, caplog):
    closed = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("EPOCHAL_MLFLOW_URI", closed)
    with caplog.at_level(logging.WARNING, logger="epochal"):
        run = epochal.init(project="later", sinks=["mlflow"], config={"seed": 1}, system_interval=0)
        train(run, 50)
        run.finish()
    warnings = [r.getMessage() for r in caplog.records if closed in r.getMessage()]
    assert warnings and "unreachable" in warnings[0] and "epochal sync" in warnings[0]
    assert len([w for w in warnings if "unreachable" in w]) == 1  # one warning, not one per retry
    assert len(read_metrics(run.dir)[0]) == 50  # the run is whole locally

    assert cli(["sync", "--to", server.uri, run.id]) == 0
    got = server.read_run(run.id, "later", artifacts=False)
    assert got["info"]["status"] == "FINISHED" and got["params"] == {"seed": "1"}
    assert got["metrics"]["train/loss"] == points(run.dir)["train/loss"]


def test_a_non_mlflow_uri_gives_one_clear_warning_and_training_goes_on(monkeypatch, caplog, tmp_path):
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not mlflow</html>")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("EPOCHAL_MLFLOW_URI", uri)
    try:
        with caplog.at_level(logging.WARNING, logger="epochal"):
            run = epochal.init(sinks=["mlflow"], system_interval=0)
            train(run, 10)
            run.finish()
    finally:
        httpd.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if uri in m]) == 1
    assert "MLflow tracking server" in next(m for m in messages if uri in m)
    assert len(read_metrics(run.dir)[0]) == 10 and read_json(run.dir / "run.json")["status"] == "finished"


# -- sync ---------------------------------------------------------------------------------------------------
def test_sync_of_a_run_recorded_without_mirror_then_a_second_sync_sends_nothing(server, tmp_path, capsys):
    run = epochal.init(project="old", config={"opt": {"name": "sgd"}}, system_interval=0)
    train(run, 300)
    run.log_system({"gpu/util": 50.0})
    (tmp_path / "a.txt").write_text("one")
    version = run.log_artifact(tmp_path / "a.txt", name="notes").version
    run.finish()
    assert not (run.dir / CURSOR_FILE).exists()

    first = sync_module.sync_runs(server.uri, [run.dir], out=None)[0]
    assert first.points == 600 + 1 and first.requests > 0
    second = sync_module.sync_runs(server.uri, [run.dir], out=None)[0]
    assert (second.points, second.requests) == (0, 0)  # idempotent: nothing is sent twice
    got = server.read_run(run.id, "old")
    assert got["runs_found"] == 1
    assert got["metrics"]["train/loss"] == points(run.dir)["train/loss"]
    assert got["metrics"]["system/gpu/util"][0][2] == 50.0
    assert got["params"] == {"opt.name": "sgd"} and got["artifacts"] == {f"notes/{version}/a.txt": sha256(tmp_path / "a.txt")}
    assert got["tags"]["epochal.artifact.notes.latest"] == version
    assert read_json(run.dir / "run.json")["mlflow"]["run_id"] == got["info"]["run_id"]


def test_an_interrupted_sync_resumes_at_its_cursor(server, monkeypatch):
    run = epochal.init(project="resume", system_interval=0)
    train(run, 1500)  # 3000 points: three requests
    run.finish()

    class Failing(MlflowRest):
        batches = 0

        def log_batch(self, *args, **kwargs):
            Failing.batches += 1
            if Failing.batches > 1:
                from epochal.sinks.mlflow_rest import ServerUnavailable

                raise ServerUnavailable("server went away (injected)")
            return super().log_batch(*args, **kwargs)

    monkeypatch.setattr(sync_module, "RETRY_DELAYS", ())
    with pytest.raises(sync_module.SyncError, match="again to resume"):
        sync_module.sync_runs(server.uri, [run.dir], out=None, rest_factory=Failing)
    cursor = read_json(run.dir / CURSOR_FILE)["servers"][server.uri]
    assert cursor["metrics"] != [0, 0]  # the first 1000 points are acknowledged
    monkeypatch.setattr(sync_module, "PROGRESS_EVERY", 0.0)
    out = io.StringIO()
    result = sync_module.sync_runs(server.uri, [run.dir], out=out)[0]
    assert result.points == 2000
    assert f"resume/{run.id}: 2,000 of 2,000 points" in out.getvalue()  # progress of a long run
    got = server.read_run(run.id, "resume", artifacts=False)
    assert got["metrics"]["train/loss"] == points(run.dir)["train/loss"]
    assert got["metrics"]["acc_top1"] == points(run.dir)["acc@top1"]


def test_a_sigkilled_run_synced_later_reads_killed(server, tmp_path, run_root):
    script = textwrap.dedent("""
        import os, signal, epochal
        run = epochal.init(project="killed", system_interval=0)
        for step in range(200):
            run.log({"loss": 1.0 / (step + 1)})
        run.flush()
        print(run.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EPOCHAL_DIR": str(run_root)})
    assert proc.returncode == -signal.SIGKILL
    run_id = proc.stdout.split()[0]
    assert cli(["sync", "--to", server.uri, "--project", "killed"]) == 0
    got = server.read_run(run_id, "killed", artifacts=False)
    assert got["info"]["status"] == "KILLED" and got["info"]["end_time"]
    assert len(got["metrics"]["loss"]) == 200


def test_sync_skips_running_runs_and_needs_a_server(server, capsys):
    run = epochal.init(project="busy", system_interval=0)
    train(run, 5)
    run.flush()
    assert cli(["sync", "--to", server.uri, run.id]) == 0
    assert "still running" in capsys.readouterr().out
    assert server.read_run(run.id, "busy", artifacts=False) == {}
    run.finish()
    assert cli(["sync", run.id]) == 1
    assert "--to" in capsys.readouterr().err


def test_a_record_the_server_refuses_is_skipped_with_a_warning_not_retried(server, caplog, tmp_path):
    run = epochal.init(project="refused", system_interval=0)
    run.finish()
    rest = MlflowRest(server.uri)
    mirror = Mirror(run.dir, rest)
    mirror.ensure_run("refused", "r", run.id, 0.0)
    good = [{"key": "ok", "value": float(i), "timestamp": 1, "step": i} for i in range(64)]
    bad = {"key": "bad//name", "value": 1.0, "timestamp": 1, "step": 0}  # bypasses the name mapping
    before = rest.requests_sent
    with caplog.at_level(logging.WARNING, logger="epochal"):
        mirror._log_batch(metrics=good[:32] + [bad] + good[32:])
    assert rest.requests_sent - before <= 2 * 7 + 1  # halving, never a retry loop
    assert mirror.skipped == 1 and any("bad//name" in r.getMessage() for r in caplog.records)
    got = server.read_run(run.id, "refused", artifacts=False)
    assert [p[0] for p in got["metrics"]["ok"]] == list(range(64))


# -- faults -------------------------------------------------------------------------------------------
def test_server_stopped_mid_run_and_restarted_every_point_exactly_once(mirrored, monkeypatch):
    monkeypatch.setenv("EPOCHAL_MLFLOW_BACKLOG_MB", "0.001")  # the outage's backlog is read back from metrics.bin
    run = epochal.init(project="outage", system_interval=0, finish_timeout=300)
    train(run, 200)
    run.flush()
    mirrored.stop()
    train(run, 200, start=200)
    run.flush()
    mirrored.start()
    train(run, 200, start=400)
    run.finish()
    if read_json(run.dir / CURSOR_FILE)["servers"][mirrored.uri]["status"] != "FINISHED":
        assert cli(["sync", "--to", mirrored.uri, run.id]) == 0
    got = mirrored.read_run(run.id, "outage", artifacts=False)
    assert got["info"]["status"] == "FINISHED"
    assert got["metrics"]["train/loss"] == points(run.dir)["train/loss"]  # 600 points, each once
    assert len(got["metrics"]["train/loss"]) == 600


def test_credentials_reach_neither_disk_nor_logs(mirrored, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", SECRET)
    monkeypatch.setenv("EPOCHAL_MLFLOW_URI", mirrored.uri.replace("http://", f"http://user:{SECRET}@"))
    with caplog.at_level(logging.DEBUG, logger="epochal"):
        run = epochal.init(project="secret", system_interval=0)
        train(run, 5)
        run.finish()
    assert mirrored.read_run(run.id, "secret", artifacts=False)["info"]["status"] == "FINISHED"
    for path in run.dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in caplog.text


def _closed_port() -> int:
    from mlflow_server import free_port

    return free_port()


# -- frameworks, mirrored live --------------------------------------------------------------------------
def _same_history(got: dict, run_dir: Path) -> None:
    expected = points(run_dir)
    assert expected and {k: got["metrics"].get(k) for k in expected} == expected


def test_a_lightning_fit_is_mirrored_live(mirrored, run_root):
    from epochal.integrations.lightning import EpochalLogger
    from test_lightning import Tiny, loader, trainer

    logger = EpochalLogger(project="lit-mlflow", name="tiny", finish_timeout=300)
    fit = trainer(logger)
    fit.fit(Tiny(), loader(), loader())
    run = epochal.open_run(logger.version, dir=run_root)
    got = mirrored.read_run(run.id, "lit-mlflow")
    assert got["info"]["status"] == "FINISHED" and got["info"]["run_name"] == "tiny"
    assert got["params"]["lr"] == "0.05" and got["params"]["hidden"] == "8"
    _same_history(got, run.dir)
    assert [p[0] for p in got["metrics"]["train/loss"]] == list(range(fit.global_step))
    best = run.path("model", "best")
    files = [p for p in ([best] if best.is_file() else best.rglob("*")) if p.is_file()]
    assert files and all(sha256(f) in got["artifacts"].values() for f in files)


def test_an_hf_trainer_is_mirrored_live(mirrored, run_root, tmp_path):
    from epochal.integrations.transformers import EpochalCallback
    from test_transformers import make_trainer, training_args

    callback = EpochalCallback(project="hf-mlflow", name="tiny-bert", finish_timeout=300)
    trainer = make_trainer(training_args(tmp_path / "out"), callback)
    trainer.train()
    run_dir = next((run_root / "hf-mlflow").iterdir())
    meta = read_json(run_dir / "run.json")
    got = mirrored.read_run(meta["id"], "hf-mlflow", artifacts=False)
    assert got["info"]["status"] == "FINISHED" and got["info"]["run_name"] == "tiny-bert"
    assert got["params"]["training_args.learning_rate"] == str(trainer.args.learning_rate)
    assert got["params"]["training_args.hub_token"] == "***"  # redacted before the store, so for the server too
    assert got["params"]["model_config.vocab_size"] == "100" and len(got["params"]) > 100  # several batches
    _same_history(got, run_dir)
    assert [p[0] for p in got["metrics"]["val/loss"]] == [3, 6]
