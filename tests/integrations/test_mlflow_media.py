"""Media in MLflow: images, histograms and texts mirrored live and by ``epochal sync`` into a real
``mlflow server``, read back with ``MlflowClient`` (list and download), each file sent exactly once."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest

import epochal
from epochal import sync as sync_module
from epochal._media_store import INDEX_FILE, read_index
from epochal.cli import main as cli
from epochal.sinks.mlflow_mapping import NameMapper
from epochal.sinks.mlflow_media import THUMBNAIL_SIZE, index_entries, media_files, thumbnail
from epochal.sinks.mlflow_mirror import CURSOR_FILE
from epochal.sinks.mlflow_rest import MlflowRest
from epochal.store import read_json
from test_mlflow import _closed_port, mirrored, server  # noqa: F401  (the session's MLflow server)

STEPS = (0, 4)


def frame(seed: int, shape=(12, 16, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def log_media(run, steps=STEPS) -> None:
    for step in steps:
        run.log({"loss": 1.0 / (step + 1),
                 "val/samples": [epochal.Image(frame(step), caption=f"a{step}"), epochal.Image(frame(step + 50))],
                 "big": epochal.Image(frame(step, (300, 400, 3))),
                 "weights/fc": epochal.Histogram(np.random.default_rng(step).normal(size=1000), bins=8),
                 "report": epochal.Text(f"**step** {step}")}, step=step)


def expected_files(run_dir) -> dict[str, str]:
    """Every artifact file the run's media should become in MLflow: path -> sha256 of its bytes."""
    names = NameMapper()
    out = {}
    for entry in read_index(run_dir):
        for path, read in media_files(entry, run_dir, names):
            out[path] = hashlib.sha256(read()).hexdigest()
    return out


def media_of(got: dict) -> dict[str, str]:
    return {p: h for p, h in got["artifacts"].items() if p.split("/")[0] in ("images", "histograms", "text")}


@pytest.fixture
def uploads(monkeypatch):
    """Artifact path -> how many times the server acknowledged an upload to it (live mirror and sync alike)."""
    counts: dict[str, int] = {}
    upload = MlflowRest.upload

    def counting(self, artifact_path, file, **kwargs):
        upload(self, artifact_path, file, **kwargs)
        path = artifact_path.split("/artifacts/", 1)[1]
        counts[path] = counts.get(path, 0) + 1

    monkeypatch.setattr(MlflowRest, "upload", counting)
    return counts


# -- without a server ------------------------------------------------------------------------------------
def test_media_land_where_mlflow_puts_them_with_safe_names(run_root):
    run = epochal.init(project="names", system_interval=0)
    run.log({"a/b+c": epochal.Image(frame(1)), "h": epochal.Histogram([1.0, 2.0, 3.0], bins=2),
             "notes/day": epochal.Text("hi")}, step=7)
    run.finish()
    entries = {e["key"]: e for e in read_index(run.dir)}
    names = NameMapper()
    image = [p for p, _ in media_files(entries["a/b+c"], run.dir, names)]
    ms = int(round(entries["a/b+c"]["time"] * 1000))
    assert image == [f"images/a~b_c+step+7+timestamp+{ms}+7-0.png", f"images/a~b_c+step+7+timestamp+{ms}+7-0+compressed.png"]
    assert names.mapped == {"a/b+c": "a/b_c"}  # recorded in epochal.name_map like any mapped name
    assert [p for p, _ in media_files(entries["h"], run.dir, names)] == ["histograms/h/7-0.json"]
    [(path, read)] = media_files(entries["notes/day"], run.dir, names)
    assert path == "text/notes/day/7-0.md" and read() == b"hi"


def test_thumbnails_fit_mlflows_size_and_small_images_stand_for_themselves():
    big, small = io.BytesIO(), io.BytesIO()
    PIL.Image.fromarray(frame(3, (300, 600, 3))).save(big, format="PNG")
    PIL.Image.fromarray(frame(3)).save(small, format="PNG")
    with PIL.Image.open(io.BytesIO(thumbnail(big.getvalue()))) as thumb:
        assert thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE // 2)
    assert thumbnail(small.getvalue()) == small.getvalue()
    assert thumbnail(b"not a png") == b"not a png"


def test_thumbnails_survive_a_decoder_patched_by_another_library():
    import ultralytics.utils.patches  # noqa: F401  # replaces PIL.Image.open process-wide, as any YOLO user has it

    big = io.BytesIO()
    PIL.Image.fromarray(frame(3, (300, 600, 3))).save(big, format="PNG")
    broken = big.getvalue()[:40] + b"\0" * 200  # a PNG signature, then garbage
    assert thumbnail(b"not a png") == b"not a png"
    assert thumbnail(broken) == broken
    with PIL.Image.open(io.BytesIO(thumbnail(big.getvalue()))) as thumb:
        assert thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE // 2)


def test_the_index_is_read_line_by_line_past_an_offset_skipping_torn_lines(tmp_path):
    (tmp_path / "media").mkdir()
    good = json.dumps({"step": 1, "time": 1.0, "key": "k", "type": "text", "file": "media/k/1-0.md"})
    (tmp_path / INDEX_FILE).write_text(good + '\n{"step": 2, "tim\n' + good + "\n" + '{"step": 3')
    got = list(index_entries(tmp_path, 0))
    assert [e is not None for e, _ in got] == [True, False, True]  # the unfinished last line waits
    assert list(index_entries(tmp_path, got[1][1])) == got[2:]


# -- a real server --------------------------------------------------------------------------------------
def test_live_mirror_media_read_back_byte_for_byte_and_a_sync_sends_none_again(mirrored, uploads):  # noqa: F811
    run = epochal.init(project="media", system_interval=0, finish_timeout=300)
    log_media(run)
    run.finish()

    files = expected_files(run.dir)
    assert len(files) == len(STEPS) * (2 * 2 + 2 + 1 + 1)  # two small images and a big one, each + thumbnail
    got = mirrored.read_run(run.id, "media")
    assert media_of(got) == files  # downloaded with MlflowClient: the bytes epochal stored
    for entry in read_index(run.dir):  # ...which are the files in the run directory
        stored = hashlib.sha256((run.dir / entry["file"]).read_bytes()).hexdigest()
        assert stored == entry["sha256"] and stored in files.values()
    assert got["tags"]["mlflow.loggedImages"] == "True"
    assert sorted(uploads) == sorted(files) and set(uploads.values()) == {1}  # each file once
    cursor = read_json(run.dir / CURSOR_FILE)["servers"][mirrored.uri]
    assert cursor["media"] == [(run.dir / INDEX_FILE).stat().st_size, 0]
    assert "mlflow" not in sys.modules  # the mirror speaks REST; mlflow is never imported

    result = sync_module.sync_runs(mirrored.uri, [run.dir], out=None)[0]
    assert result.requests == 0 and set(uploads.values()) == {1}  # the sync finds nothing left to send


def test_image_files_follow_mlflow_log_image_layout(mirrored):  # noqa: F811
    """MLflow's own ``log_image(key=..., step=...)`` and the mirror name image files alike (its UI parses them)."""
    script = textwrap.dedent(f"""
        import json, numpy as np
        from mlflow.tracking import MlflowClient
        client = MlflowClient("{mirrored.uri}")
        experiment = client.get_experiment_by_name("media-peer") or client.get_experiment(
            client.create_experiment("media-peer"))
        run = client.create_run(experiment.experiment_id)
        client.log_image(run.info.run_id, np.zeros((8, 8, 3), dtype=np.uint8), key="val/samples", step=4,
                         timestamp=1234, synchronous=True)
        print(json.dumps(sorted(f.path for f in client.list_artifacts(run.info.run_id, "images"))))
    """)
    out = subprocess.run([str(mirrored.python), "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    peer = json.loads(out.stdout.strip().splitlines()[-1])

    run = epochal.init(project="media-peer", system_interval=0, finish_timeout=300)
    run.log({"val/samples": epochal.Image(frame(0, (8, 8, 3)))}, step=4)
    run.finish()
    ours = sorted(p for p in media_of(mirrored.read_run(run.id, "media-peer")) if p.startswith("images/"))

    def shape(path: str) -> list[str]:  # the fields MLflow's UI reads: key, step, timestamp, compressed, extension
        name, ext = path.rsplit(".", 1)
        key, s, step, t, stamp, _uid, *rest = name.split("+")
        assert step.isdigit() and stamp.isdigit()
        return [key, s, step, t, *rest, ext if not rest else "thumbnail"]

    assert sorted(map(shape, ours)) == sorted(map(shape, peer)) == [
        ["images/val~samples", "step", "4", "timestamp", "compressed", "thumbnail"],
        ["images/val~samples", "step", "4", "timestamp", "png"]]


def test_server_down_during_the_run_then_sync_delivers_the_media_once(server, monkeypatch, uploads,  # noqa: F811
                                                                        caplog, capsys):
    monkeypatch.setenv("EPOCHAL_MLFLOW_URI", f"http://127.0.0.1:{_closed_port()}")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        run = epochal.init(project="media-later", sinks=["mlflow"], system_interval=0)
        log_media(run)
        run.finish()
    assert uploads == {} and any("epochal sync" in r.getMessage() for r in caplog.records)

    assert cli(["sync", "--to", server.uri, run.id]) == 0
    files = expected_files(run.dir)
    assert f", {len(files)} media file(s)" in capsys.readouterr().out
    assert media_of(server.read_run(run.id, "media-later")) == files
    assert sorted(uploads) == sorted(files) and set(uploads.values()) == {1}
    second = sync_module.sync_runs(server.uri, [run.dir], out=None)[0]
    assert second.requests == 0 and set(uploads.values()) == {1}


def test_server_stopped_mid_run_and_a_resumed_run_send_every_media_file_once(mirrored, uploads):  # noqa: F811
    run = epochal.init(project="media-outage", id="media-job", system_interval=0, finish_timeout=300)
    log_media(run, steps=(0,))
    run.flush()
    mirrored.stop()
    log_media(run, steps=(1,))
    run.flush()
    mirrored.start()
    log_media(run, steps=(2,))
    run.finish()
    if read_json(run.dir / CURSOR_FILE)["servers"][mirrored.uri]["status"] != "FINISHED":
        assert cli(["sync", "--to", mirrored.uri, run.id]) == 0

    run = epochal.init(project="media-outage", id="media-job", resume=True, system_interval=0, finish_timeout=300)
    log_media(run, steps=(3,))
    run.finish()
    assert cli(["sync", "--to", mirrored.uri, run.id]) == 0

    files = expected_files(run.dir)
    assert len(files) == 4 * 8
    assert media_of(mirrored.read_run(run.id, "media-outage")) == files
    assert sorted(uploads) == sorted(files) and set(uploads.values()) == {1}  # across outage, resume and sync


def test_a_media_file_swapped_for_a_symlink_is_never_read_through_it(server, tmp_path, caplog):  # noqa: F811
    run = epochal.init(project="media-link", system_interval=0)
    run.log({"notes": epochal.Text("kept"), "leak": epochal.Text("placeholder")}, step=0)
    run.finish()
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run")
    [leak] = [e for e in read_index(run.dir) if e["key"] == "leak"]
    (run.dir / leak["file"]).unlink()
    (run.dir / leak["file"]).symlink_to(secret)

    with caplog.at_level(logging.WARNING, logger="epochal"):
        result = sync_module.sync_runs(server.uri, [run.dir], out=None)[0]
    assert result.media == 1 and any(leak["file"] in r.getMessage() for r in caplog.records)
    assert media_of(server.read_run(run.id, "media-link")) == {
        "text/notes/0-0.md": hashlib.sha256(b"kept").hexdigest()}
    assert sync_module.sync_runs(server.uri, [run.dir], out=None)[0].requests == 0  # passed over, not retried


def test_sklearn_autolog_plots_reach_mlflows_image_grid_live(mirrored):  # noqa: F811
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from epochal.integrations import sklearn as epochal_sklearn

    epochal_sklearn.autolog(project="media-sklearn", system_interval=0, log_models=False)
    try:
        LogisticRegression().fit(*make_classification(n_samples=80, n_features=5, random_state=1))
    finally:
        epochal_sklearn.autolog(disable=True)
    [run_id] = list(epochal.runs(project="media-sklearn")["id"])
    run_dir = epochal.open_run(run_id, project="media-sklearn").dir
    got = media_of(mirrored.read_run(run_id, "media-sklearn"))
    assert got == expected_files(run_dir)
    keys = {path.split("+")[0] for path in got}
    assert keys == {"images/train~confusion_matrix", "images/train~roc_curve", "images/train~precision_recall_curve"}
