"""Malformed run files: every reader lists the run with what it can read and a note naming the bad file.

Explicit cases from the issue, then a property-based fuzz (hypothesis) over every run file, byte-level
(flips, truncation, insertion, random bytes) and structured (any JSON value in any JSON file).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import epochal
from epochal import cli
from epochal.query import list_runs, open_run

JSON_FILES = ("run.json", "config.json", "summary.json", "artifacts/manifest.json", "environment/metadata.json")


def _good_run(root: Path, project: str, config: dict) -> Path:
    run = epochal.init(project=project, dir=root, config=config, notes="n", tags=["t"], system_interval=0)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 5}, epoch=step)
    run.log_system({"cpu/percent": 12.5})
    source = root.parent / f"{project}-w.bin"
    source.write_bytes(b"weights" * 10)
    run.log_artifact(source, name="model", aliases=["best"])
    run.log_dataset(source, "train")
    run.finish()
    (run.dir / "environment").mkdir(exist_ok=True)
    (run.dir / "environment" / "metadata.json").write_text(json.dumps({"git": {"repo": False}, "frameworks": {}}))
    return run.dir


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A root with a run to damage (project 'bad') and a healthy neighbour (project 'good')."""
    root = tmp_path_factory.mktemp("template") / "runs"
    bad = _good_run(root, "bad", {"lr": 0.1, "layers": [1, 2]})
    good = _good_run(root, "good", {"lr": 0.2})
    return root, bad.relative_to(root), good.relative_to(root)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _read_everything(root: Path, bad_id: str, good_id: str) -> dict:
    """Every reader the issue names; none may raise; both runs listed; the good one intact."""
    rows = {r["id"]: r for r in list_runs(dir=root)}
    frame = epochal.runs(dir=root)
    assert good_id in rows and rows[good_id]["config.lr"] == 0.2 and rows[good_id]["problems"] == []
    assert set(frame["id"]) == set(rows)
    code, out, err = _cli("ls", "--dir", str(root))
    assert code == 0 and good_id in out, err
    code, out_json, err = _cli("ls", "--dir", str(root), "--json")
    assert code == 0 and json.loads(out_json)
    result = {"row": rows.get(bad_id), "ls": out}
    if bad_id in rows:
        reader = open_run(f"bad/{bad_id}", dir=root)
        reader.metadata, reader.status, reader.name, reader.config, reader.summary, reader.environment
        reader.datasets, reader.records(), reader.history(), reader.requirements()
        result["system"] = reader.system()
        result["artifacts"] = reader.artifacts()
        result["problems"] = reader.problems()
        for argv in (("show", bad_id), ("show", bad_id, "--json")):
            code, out, err = _cli(*argv, "--dir", str(root), "--project", "bad")
            assert code == 0, err
            result[" ".join(argv[:1] + argv[2:])] = out
        epochal.diff(reader, open_run(f"good/{good_id}", dir=root))
    return result


@pytest.fixture()
def damaged(template, tmp_path):
    root, bad, good = template
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    return copy, copy / bad, bad.name, good.name


@pytest.mark.parametrize(("file", "content", "note"), [
    ("config.json", "[1, 2, 3]", "config.json: holds a JSON array"),
    ("summary.json", "5", "summary.json: holds a JSON number"),
    ("run.json", "5", "run.json: holds a JSON number"),
    ("run.json", "[" * 100_000, "run.json: nested too deeply"),
    ("config.json", '{"a": ' * 5000 + "1" + "}" * 5000, "config.json: nested"),
    ("run.json", '{"tags": 5, "status": ["x"], "created": "yesterday", "flush_interval": "x", "datasets": [1]}',
     "run.json: 'tags' holds a int"),
    ("artifacts/manifest.json", '{"artifacts": {"model": 5, "w": {"versions": [5, {"version": "v0"}]}}}',
     "artifact 'model' is a int"),
    ("system.jsonl", "5\n[1]\n\"x\"\n", "system.jsonl: 3 line(s) skipped"),
])
def test_wrong_shaped_files_are_listed_with_a_note(damaged, file, content, note):
    root, bad_dir, bad_id, good_id = damaged
    (bad_dir / file).write_text(content)
    seen = _read_everything(root, bad_id, good_id)
    assert seen["row"] is not None, "the damaged run must still be listed"
    assert any(note in p for p in seen["problems"]), seen["problems"]
    assert note.split(":")[0] in seen["show"] and "problems" in seen["show"]
    if file in ("run.json", "config.json", "summary.json"):  # the files `ls` reads
        assert "note:" in seen["ls"] and file in seen["ls"].split("note:")[1]
    if file == "system.jsonl":
        assert len(seen["system"]) == 0
    if file == "config.json":  # what can be read still is
        assert seen["row"]["summary.loss"] == pytest.approx(0.2)
    if file == "artifacts/manifest.json":
        assert seen["artifacts"] == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
run_keys = st.sampled_from(["id", "name", "status", "tags", "created", "started", "finished", "pid", "host",
                            "flush_interval", "datasets", "git", "error", "notes", "name_map", "last_step"])
manifest_like = st.fixed_dictionaries({"artifacts": st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.fixed_dictionaries({"versions": st.lists(st.dictionaries(
        st.sampled_from(["version", "path", "sha256", "size", "created", "metadata", "type"]), json_values,
        max_size=7), max_size=3), "aliases": json_values}) | json_values, max_size=3)})
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def _fresh(template) -> tuple[Path, Path, str, str, Path]:
    root, bad, good = template
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    copy = scratch / "runs"
    shutil.copytree(root, copy)
    return copy, copy / bad, bad.name, good.name, scratch


@FUZZ
@given(file=st.sampled_from(JSON_FILES + ("system.jsonl",)), data=st.data())
def test_fuzz_structured(template, file, data):
    root, bad_dir, bad_id, good_id, scratch = _fresh(template)
    try:
        if file == "run.json":
            value = data.draw(st.dictionaries(run_keys, json_values) | json_values)
        elif file == "artifacts/manifest.json":
            value = data.draw(manifest_like | json_values)
        elif file == "system.jsonl":
            value = None
            lines = data.draw(st.lists(json_values, min_size=1, max_size=5))
            (bad_dir / file).write_text("".join(json.dumps(v) + "\n" for v in lines))
        else:
            value = data.draw(json_values)
        if value is not None or file != "system.jsonl":
            (bad_dir / file).parent.mkdir(exist_ok=True)
            (bad_dir / file).write_text(json.dumps(value))
        seen = _read_everything(root, bad_id, good_id)
        assert seen["row"] is not None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@FUZZ
@given(file=st.sampled_from(JSON_FILES + ("system.jsonl", "metrics.bin")),
       how=st.sampled_from(["flip", "truncate", "insert", "random", "zero"]), data=st.data())
def test_fuzz_bytes(template, file, how, data):
    root, bad_dir, bad_id, good_id, scratch = _fresh(template)
    try:
        path = bad_dir / file
        raw = bytearray(path.read_bytes())
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if how == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "truncate":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif how == "random":
            raw = bytearray(data.draw(st.binary(max_size=256)))
        elif how == "zero":
            raw[at : at + data.draw(st.integers(1, 64))] = bytes(min(64, len(raw) - at))
        path.write_bytes(bytes(raw))
        seen = _read_everything(root, bad_id, good_id)
        assert seen["row"] is not None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_manifest_entry_without_created_reads_as_time_zero(damaged):
    root, bad_dir, bad_id, good_id = damaged  # (the byte fuzz found it: a flip inside the key "created")
    manifest = bad_dir / "artifacts" / "manifest.json"
    text = manifest.read_text()
    assert '"created"' in text
    manifest.write_text(text.replace('"created"', '"creat3d"'))
    seen = _read_everything(root, bad_id, good_id)
    assert seen["artifacts"] and all(v.created == 0.0 for v in seen["artifacts"])
