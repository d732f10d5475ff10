"""Artifacts: versions, aliases, content addressing, hardlink/copy, retention, unsafe names, reading back."""

from __future__ import annotations

import errno
import json
import os

import pytest

import epochal
from epochal import artifacts
from epochal.store import read_json


def _files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_versions_latest_and_aliases(tmp_path):
    source = tmp_path / "model.bin"
    run = epochal.init(project="p", system_interval=0)
    source.write_bytes(b"one")
    v0 = run.log_artifact(source, name="model", type="model", aliases=["best"], metadata={"epoch": 1})
    source.write_bytes(b"two")
    v1 = run.log_artifact(source, name="model", type="model", metadata={"epoch": 2})
    run.finish()
    assert (v0.version, v1.version) == ("v0", "v1")
    assert v0.aliases == ("best", "latest") and v1.aliases == ("latest",)
    assert v0.path == "artifacts/model/v0/model.bin" and v0.size == 3 and v0.files == 1
    reader = epochal.open_run(run.id)
    assert reader.path("model").read_bytes() == b"two"
    assert reader.path("model", "best").read_bytes() == b"one"
    assert reader.path("model", "v0").read_bytes() == b"one"
    listed = {(a.version, a.aliases) for a in reader.artifacts()}
    assert listed == {("v0", ("best",)), ("v1", ("latest",))}
    assert [a.metadata["epoch"] for a in reader.artifacts()] == [1, 2]
    manifest = read_json(run.dir / "artifacts" / "manifest.json")
    assert manifest["artifacts"]["model"]["aliases"] == {"latest": "v1", "best": "v0"}
    assert not [p for p in (run.dir / "artifacts").iterdir() if p.name.endswith(".tmp")]


def test_set_alias_moves_best_and_rejects_unknown_versions(tmp_path):
    source = tmp_path / "ckpt.pt"
    run = epochal.init(system_interval=0)
    for content in (b"a", b"b", b"c"):
        source.write_bytes(content)
        run.log_artifact(source, name="ckpt")
    run.set_alias("ckpt", "v1", "best")  # right after the log: applied in order on the store's lane
    with pytest.raises(KeyError, match="no version 'v7'"):
        run.set_alias("ckpt", "v7", "best")
    run.flush()
    with pytest.raises(KeyError, match="no version 'v7'"):
        artifacts.set_alias(run.dir, "ckpt", "v7", "best")
    with pytest.raises(KeyError, match="no artifact 'nope'"):
        artifacts.set_alias(run.dir, "nope", "v0", "best")
    with pytest.raises(ValueError):
        artifacts.set_alias(run.dir, "ckpt", "../v1", "best")
    with pytest.raises(ValueError):
        artifacts.set_alias(run.dir, "ckpt", "v1", "v2")  # an alias may not look like a version
    run.finish()
    assert epochal.open_run(run.id).path("ckpt", "best").read_bytes() == b"b"


def test_identical_content_is_stored_once(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(4096))
    b.write_bytes(a.read_bytes())
    run = epochal.init(system_interval=0)
    first = run.log_artifact(a, name="weights")
    again = run.log_artifact(b, name="weights", aliases=["best"])  # same content: a new version, no new bytes
    other = run.log_artifact(b, name="copy")  # same content under another name: one blob
    run.finish()
    assert (first.version, again.version) == ("v0", "v1") and "best" in again.aliases
    assert first.sha256 == other.sha256 == again.sha256
    assert os.stat(run.dir / again.path).st_ino == os.stat(run.dir / first.path).st_ino
    stored_a = run.dir / first.path
    stored_b = run.dir / other.path
    assert os.stat(stored_a).st_ino == os.stat(stored_b).st_ino
    blobs = list((run.dir / "artifacts" / ".blobs").iterdir())
    assert len(blobs) == 1


def test_default_stores_a_copy_immune_to_in_place_rewrites(tmp_path):
    source = tmp_path / "last.pt"
    source.write_bytes(b"epoch-1")
    run = epochal.init(system_interval=0)
    first = run.log_artifact(source, name="last")
    source.write_bytes(b"epoch-2")  # same inode, rewritten in place (as Ultralytics does with last.pt)
    second = run.log_artifact(source, name="last")
    run.finish()
    assert os.stat(run.dir / first.path).st_ino != os.stat(source).st_ino
    assert (run.dir / first.path).read_bytes() == b"epoch-1"
    assert (run.dir / second.path).read_bytes() == b"epoch-2"


def test_hardlink_mode_links_on_same_filesystem_and_copies_across(tmp_path, monkeypatch):
    monkeypatch.setenv("EPOCHAL_ARTIFACT_LINK", "hardlink")
    source = tmp_path / "w.bin"
    source.write_bytes(b"weights" * 100)
    run = epochal.init(system_interval=0)
    linked = run.log_artifact(source, name="linked")
    run.flush()
    assert os.stat(run.dir / linked.path).st_ino == os.stat(source).st_ino

    real_link = os.link

    def cross_device(src, dst, *args, **kwargs):
        if str(dst).startswith(str(run.dir / "artifacts" / ".staging")):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(artifacts.os, "link", cross_device)
    other = tmp_path / "w3.bin"
    other.write_bytes(b"third" * 100)
    fallback = run.log_artifact(other, name="fallback")
    run.finish()
    stored = run.dir / fallback.path
    assert stored.read_bytes() == other.read_bytes()
    assert os.stat(stored).st_ino != os.stat(other).st_ino


def test_hardlink_mode_reports_a_source_rewritten_in_place(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EPOCHAL_ARTIFACT_LINK", "hardlink")
    source = tmp_path / "last.pt"
    source.write_bytes(b"epoch-1")
    run = epochal.init(system_interval=0)
    run.log_artifact(source, name="last")
    run.flush()  # filed; then the source is rewritten in place through the hardlink
    source.write_bytes(b"epoch-2")
    os.utime(source, ns=(1, 1))  # a distinct mtime even on coarse-clock filesystems
    with caplog.at_level("WARNING", logger="epochal"):
        run.log_artifact(source, name="last")
        run.flush()  # the check runs where the version is filed: on the store's lane
    run.finish()
    assert "changed after it was stored" in caplog.text and "EPOCHAL_ARTIFACT_LINK" in caplog.text


def test_folder_artifact_keeps_tree_and_skips_the_run_directory(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint-10"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 50)
    monkeypatch.setenv("EPOCHAL_DIR", str(folder / "runs"))  # the run lives inside the logged folder
    run = epochal.init(system_interval=0)
    version = run.log_artifact(folder, type="checkpoint")
    again = run.log_artifact(folder)
    run.finish()
    assert version.name == "checkpoint-10" and version.files == 2 and version.size == 108
    assert again.version == "v1" and again.sha256 == version.sha256  # the run's own files are not part of it
    stored = epochal.open_run(run.id).path("checkpoint-10")
    assert stored.is_dir() and _files_under(stored) == ["config.json", "sub", "sub/weights.bin"]


def test_keep_last_deletes_old_versions_no_alias_points_to(tmp_path):
    source = tmp_path / "epoch.ckpt"
    run = epochal.init(system_interval=0)
    for epoch in range(5):
        source.write_bytes(f"state {epoch}".encode())
        run.log_artifact(source, name="ckpt", keep_last=2, aliases=["best"] if epoch == 1 else ())
        source.unlink()  # frameworks write a new file each time
    run.finish()
    versions = {a.version: a.aliases for a in epochal.open_run(run.id).artifacts()}
    assert versions == {"v1": ("best",), "v3": (), "v4": ("latest",)}
    assert sorted(p.name for p in (run.dir / "artifacts" / "ckpt").iterdir()) == ["v1", "v3", "v4"]
    assert len(list((run.dir / "artifacts" / ".blobs").iterdir())) == 3
    with pytest.raises(ValueError, match="keep_last"):
        artifacts.store_artifact(run.dir, tmp_path, name="x", keep_last=0)


@pytest.mark.parametrize("name", [
    "../x", "../../etc/passwd", "/etc/passwd", "/tmp/x", "a/b", "a\\b", "..\\x", "a\x00b", "..", ".", "",
    ".hidden", "manifest.json", ".blobs", "x" * 200, "a..b", "con\nsole", " lead",
])
def test_unsafe_artifact_names_are_refused(tmp_path, name):
    source = tmp_path / "f.txt"
    source.write_text("x")
    run = epochal.init(system_interval=0)
    before = _files_under(tmp_path)
    with pytest.raises(ValueError) as info:
        run.log_artifact(source, name=name)
    assert "artifact name" in str(info.value) and ("use letters" in str(info.value) or "one folder name" in str(info.value)
                                                    or "real name" in str(info.value))
    with pytest.raises(ValueError):
        run.log_artifact(source, name="ok", aliases=[name or "."])
    run.finish()
    after = [p for p in _files_under(tmp_path) if p not in before]
    assert all(p.startswith("runs/") for p in after), after
    assert not (run.dir / "artifacts" / "manifest.json").exists()


def test_bad_inputs_say_what_to_do(tmp_path):
    run = epochal.init(system_interval=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.log_artifact(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="must be a str"):
        run.log_artifact(tmp_path, name=3)
    weird = tmp_path / "my model (final).pt"
    weird.write_bytes(b"m")
    assert run.log_artifact(weird).name == "my_model__final_.pt"  # default names are made safe
    run.finish()


def test_metadata_is_redacted_and_json(tmp_path):
    source = tmp_path / "m.bin"
    source.write_bytes(b"m")
    run = epochal.init(system_interval=0)
    version = run.log_artifact(source, metadata={"api_key": "sk-live-123456", "url": "https://u:pw1234@h/x", "n": 3})
    run.finish()
    text = (run.dir / "artifacts" / "manifest.json").read_text()
    assert "sk-live-123456" not in text and "pw1234" not in text
    assert version.metadata["n"] == 3 and json.loads(text)


def test_torch_checkpoint_round_trip(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data, target = torch.randn(16, 4), torch.randn(16, 1)
    run = epochal.init(project="torch", config={"lr": 0.1}, system_interval=0)
    for epoch in range(2):
        loss = torch.nn.functional.mse_loss(model(data), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log({"train/loss": loss.item()}, epoch=epoch)
        path = tmp_path / f"epoch{epoch}.pt"
        torch.save(model.state_dict(), path)
        run.log_artifact(path, name="model", type="model", keep_last=1, aliases=["best"] if epoch == 0 else ())
    run.finish()
    reader = epochal.open_run(run.id)
    best = torch.load(reader.path("model", "best"), weights_only=True)
    latest = torch.load(reader.path("model"), weights_only=True)
    restored = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    restored.load_state_dict(latest)
    assert torch.equal(restored(data), model(data))
    assert not torch.equal(best["0.weight"], latest["0.weight"])


def test_empty_folder_artifact_still_resolves(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = epochal.init(system_interval=0)
    version = run.log_artifact(empty)
    run.finish()
    assert version.files == 0 and epochal.open_run(run.id).path("empty").is_dir()


def test_artifacts_and_aliases_after_finish_are_filed_at_once(tmp_path):
    source = tmp_path / "final.pt"
    source.write_bytes(b"final weights")
    run = epochal.init(system_interval=0)
    run.finish()
    version = run.log_artifact(source, name="model")  # e.g. an integration's end-of-training hook, late
    run.set_alias("model", version.version, "best")
    reader = epochal.open_run(run.id)
    assert version.wait(0) is not None and reader.path("model", "best").read_bytes() == b"final weights"
