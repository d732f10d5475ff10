"""Media in TensorBoard: a real `tensorboard` server (started by `serve`) shows the images, histograms and
texts of a live-sink run and of an exported run through its plugins' HTTP APIs, at the logged steps."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.parse
import urllib.request

import numpy as np
import PIL.Image

import epochal
from epochal._media_store import INDEX_FILE
from epochal.sinks import tensorboard as tb
from test_tensorboard import _get, _poll, event_files, serving

PROJECT = "tbmedia"
STEPS = (0, 3, 7)


def frames(step: int) -> list[np.ndarray]:
    rng = np.random.default_rng(step)
    return [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(2)]


def weights(step: int) -> np.ndarray:
    return np.random.default_rng(100 + step).normal(loc=step, size=5000)


def log_media(run) -> None:
    for step in STEPS:
        a, b = frames(step)
        run.log({"loss": 1.0 / (step + 1),
                 "val/samples": [epochal.Image(a, caption=f"a{step}"), epochal.Image(b.transpose(2, 0, 1))],
                 "weights/fc": epochal.Histogram(weights(step), bins=10),
                 "report": epochal.Text(f"**step** {step}")}, step=step)


def _raw(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_live_and_exported_media_through_the_tensorboard_server(run_root, tmp_path):
    with epochal.init(project=PROJECT, name="live", sinks=["tensorboard"], system_interval=0) as live:
        log_media(live)
    with epochal.init(project=PROJECT, name="stored", system_interval=0) as stored:
        log_media(stored)
    assert not (stored.dir / "tensorboard").exists() and live.failures == {}

    with serving(run_root, PROJECT, tmp_path) as (base, proc, log):
        deadline = time.monotonic() + 120
        tags = _poll(lambda: (t := _get(f"{base}/data/plugin/images/tags")) and all(
            "val/samples" in t.get(n, {}) for n in ("live", "stored")) and t, proc, log, deadline)
        assert all(p.name.endswith(".epochal-export") for p in event_files(stored.dir))
        for name in ("live", "stored"):
            assert tags[name]["val/samples"]["samples"] == 2
            assert tags[name]["val/samples"]["description"].startswith("<p>a0")  # the captions
            for sample in (0, 1):
                query = urllib.parse.urlencode({"run": name, "tag": "val/samples", "sample": sample})
                entries = _get(f"{base}/data/plugin/images/images?{query}")
                assert [e["step"] for e in entries] == list(STEPS)
                for entry, step in zip(entries, STEPS):
                    png = _raw(f"{base}/data/plugin/images/individualImage?{entry['query']}")
                    assert png.startswith(b"\x89PNG")
                    assert (np.array(PIL.Image.open(io.BytesIO(png))) == frames(step)[sample]).all()  # lossless

            query = urllib.parse.urlencode({"run": name, "tag": "weights/fc"})
            histograms = _poll(lambda: _get(f"{base}/data/plugin/histograms/histograms?{query}"), proc, log, deadline)
            assert [h[1] for h in histograms] == list(STEPS)
            for (_, step, buckets) in histograms:
                counts, edges = np.histogram(weights(step), bins=10)
                assert [b[2] for b in buckets] == counts.tolist()
                assert np.allclose([b[0] for b in buckets], edges[:-1]) and np.isclose(buckets[-1][1], edges[-1])

            query = urllib.parse.urlencode({"run": name, "tag": "report"})
            texts = _get(f"{base}/data/plugin/text/text?{query}")
            assert [(t["step"], t["text"]) for t in texts] == [
                (step, f"<p><strong>step</strong> {step}</p>") for step in STEPS]


def test_export_leaves_out_a_missing_file_and_keeps_the_rest(run_root, caplog):
    with epochal.init(project=PROJECT, system_interval=0) as run:
        log_media(run)
    (run.dir / "media" / "report" / "3-0.md").unlink()
    (run.dir / "media" / "weights" / "fc" / "0-0.json").write_text('{"edges": [0, 1]')  # damaged
    with caplog.at_level("WARNING", logger="epochal"):
        assert tb.export_runs([run.dir]) == 1
    assert "media/report/3-0.md" in caplog.text and "media/weights/fc/0-0.json" in caplog.text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run.dir / "tensorboard"), size_guidance={"tensors": 0})
    ea.Reload()
    assert [e.step for e in ea.Tensors("report")] == [0, 7]
    assert [e.step for e in ea.Tensors("val/samples")] == list(STEPS)
    assert [e.step for e in ea.Tensors("weights/fc")] == [3, 7]
    assert json.loads((run.dir / "media/weights/fc/7-0.json").read_text())["nonfinite"] == 0
    assert not tb._needs_export(run.dir)
    exported = event_files(run.dir)[0].stat().st_mtime
    os.utime(run.dir / INDEX_FILE, (exported + 10, exported + 10))  # a media line logged after the export
    assert tb._needs_export(run.dir)
