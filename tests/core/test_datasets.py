"""Dataset fingerprints: paths (sampled, fast on huge folders), numpy arrays, pandas frames, run metadata."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

import epochal
from epochal import datasets
from epochal.datasets import fingerprint
from epochal.store import read_json


def _make_folder(folder):
    (folder / "images").mkdir(parents=True)
    for i in range(5):
        (folder / "images" / f"{i}.bin").write_bytes(bytes([i]) * (1000 + i))
    (folder / "labels.csv").write_text("id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(5)))
    return folder


def test_folder_fingerprint_counts_and_follows_content(tmp_path):
    folder = _make_folder(tmp_path / "data")
    facts = fingerprint(folder)
    assert facts["kind"] == "path" and facts["files"] == 6
    assert facts["bytes"] == sum(1000 + i for i in range(5)) + len((folder / "labels.csv").read_bytes())
    assert facts["sampled"] is False and len(facts["sha256"]) == 64

    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    assert fingerprint(copy)["sha256"] == facts["sha256"]  # content and relative names, not location
    assert fingerprint(str(copy)) == {**fingerprint(copy)}

    (copy / "labels.csv").write_text((copy / "labels.csv").read_text().replace("4,0", "4,1"))
    assert fingerprint(copy)["sha256"] != facts["sha256"]
    (folder / "images" / "0.bin").rename(folder / "images" / "0b.bin")
    assert fingerprint(folder)["sha256"] != facts["sha256"]


def test_large_file_is_sampled_head_middle_tail(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00" * (2 << 20))
    base = fingerprint(big)
    assert base["sampled"] is True and base["files"] == 1 and base["bytes"] == 2 << 20
    with open(big, "r+b") as handle:  # a change in the middle block is seen
        handle.seek((1 << 20) - 10)
        handle.write(b"\x01")
    assert fingerprint(big)["sha256"] != base["sha256"]


def test_ten_gigabyte_folder_is_fast(tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    for i in range(10):  # sparse files: 10 GiB on paper, nothing on disk
        with open(folder / f"shard{i}.bin", "wb") as handle:
            handle.truncate(1 << 30)
            handle.seek(i * 1000)
            handle.write(b"x")
    start = time.perf_counter()
    facts = fingerprint(folder)
    elapsed = time.perf_counter() - start
    assert facts["bytes"] == 10 << 30 and facts["files"] == 10 and facts["sampled"] is True
    assert elapsed < 2.0, f"fingerprinting 10 GiB took {elapsed:.2f} s"


def test_many_files_are_sampled_within_the_budget(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:03d}.txt").write_text(f"row {i}\n" * 10)
    monkeypatch.setattr(datasets, "SAMPLE_BUDGET", 10 * 3 * datasets.SAMPLE_BLOCK)  # room for 10 files
    facts = fingerprint(folder)
    assert facts["files"] == 40 and facts["sampled_files"] == 10 and facts["sampled"] is True


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        fingerprint(tmp_path / "nope")


def test_numpy_arrays():
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    facts = fingerprint(a)
    assert facts["kind"] == "ndarray" and facts["shape"] == [3, 4] and facts["dtype"] == "int64"
    assert fingerprint(a.copy())["sha256"] == facts["sha256"]
    assert fingerprint(a.astype(np.int32))["sha256"] != facts["sha256"]  # same values, other dtype
    assert fingerprint(a.reshape(4, 3))["sha256"] != facts["sha256"]  # same bytes, other shape
    changed = a.copy()
    changed[2, 3] = -1
    assert fingerprint(changed)["sha256"] != facts["sha256"]
    view = a[:, ::2]  # non-contiguous
    assert fingerprint(view)["sha256"] == fingerprint(np.ascontiguousarray(view))["sha256"]
    objects = np.array([{"a": 1}, "x", None], dtype=object)
    assert fingerprint(objects)["sha256"] == fingerprint(objects.copy())["sha256"]


def test_pandas_frames_and_series():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["a", "b", "c"]})
    facts = fingerprint(frame)
    assert facts["kind"] == "dataframe" and facts["shape"] == [3, 2] and facts["columns"] == ["x", "label"]
    assert facts["dtypes"]["x"] == "float64"
    assert fingerprint(frame.copy())["sha256"] == facts["sha256"]
    edited = frame.copy()
    edited.loc[1, "label"] = "z"
    assert fingerprint(edited)["sha256"] != facts["sha256"]
    assert fingerprint(frame.astype({"x": "float32"}))["sha256"] != facts["sha256"]
    assert fingerprint(frame[["label", "x"]])["sha256"] != facts["sha256"]
    assert fingerprint(frame["x"])["kind"] == "series"
    unhashable = pd.DataFrame({"tokens": [[1, 2], [3]]})
    assert fingerprint(unhashable)["sha256"] == fingerprint(unhashable.copy())["sha256"]


def test_other_values():
    assert fingerprint([1, 2, 3])["sha256"] == fingerprint([1, 2, 3])["sha256"] != fingerprint([1, 2])["sha256"]
    assert fingerprint(b"abc")["bytes"] == 3
    facts = fingerprint(range(7))
    assert facts["kind"] == "object" and facts["length"] == 7 and facts["sha256"] is None


def test_log_dataset_records_in_run_metadata(tmp_path):
    folder = _make_folder(tmp_path / "data")
    x = np.linspace(0, 1, 50)
    run = epochal.init(project="p", system_interval=0)
    facts = run.log_dataset(folder, "train")
    assert facts["pending"] is True and facts["path"] == str(folder.absolute())
    run.log_dataset(x, "x")
    run.finish()
    stored = read_json(run.dir / "run.json")["datasets"]
    assert stored["train"] == json.loads(json.dumps(fingerprint(folder))) and stored["x"]["shape"] == [50]
    assert epochal.open_run(run.id).datasets["x"]["sha256"] == fingerprint(x)["sha256"]


def test_log_dataset_of_a_path_fingerprints_off_the_calling_thread(tmp_path, monkeypatch):
    from epochal import datasets

    folder = _make_folder(tmp_path / "data")
    release, seen = threading.Event(), []
    real = datasets._path_fingerprint

    def slow(root):  # held until the caller has got its answer: proves the caller never waited for it
        seen.append(threading.current_thread().name)
        assert release.wait(30)
        return real(root)

    monkeypatch.setattr(datasets, "_path_fingerprint", slow)
    run = epochal.init(project="p", system_interval=0)
    facts = run.log_dataset(folder, "train")
    assert facts["pending"] is True and "sha256" not in facts
    with pytest.raises(FileNotFoundError):
        run.log_dataset(tmp_path / "missing", "gone")
    release.set()
    run.finish()  # waits for the fingerprint
    stored = epochal.open_run(run.id).datasets["train"]
    assert stored["files"] == 6 and stored["sha256"] == real(folder)["sha256"] and "pending" not in stored
    assert seen and seen[0].startswith("epochal-background")


def test_fingerprinting_a_path_imports_neither_numpy_nor_pandas(tmp_path):
    _make_folder(tmp_path / "data")
    code = (
        "import sys, epochal.datasets as d; f = d.fingerprint(sys.argv[1]); "
        "assert f['files'] == 6, f; print([m for m in ('numpy', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
