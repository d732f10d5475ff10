"""Environment capture: git, python, packages, frameworks, hardware; and no secret ever reaches disk."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

import epochal
from epochal import environment, host_facts
from epochal.store import read_json

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo, *args):
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                         env={**os.environ, **GIT_ENV})
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with one commit and a remote whose URL carries credentials; the test's cwd."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "trunk")
    git(path, "remote", "add", "origin", "https://alice:hunter2secret@git.example.com/team/project.git")
    (path / "train.py").write_text("lr = 0.1\n")
    (path / ".gitignore").write_text("runs/\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    monkeypatch.chdir(path)
    monkeypatch.setenv("EPOCHAL_DIR", str(path / "runs"))
    return path


def env_files(run):
    folder = run.dir / "environment"
    return read_json(folder / "metadata.json"), folder


def test_git_facts_dirty_flag_and_diff(repo):
    (repo / "train.py").write_text("lr = 0.2\n")
    (repo / "notes.txt").write_text("untracked\n")
    run = epochal.init(project="env", system_interval=0)
    run.finish()
    commit = git(repo, "rev-parse", "HEAD")
    meta = read_json(run.dir / "run.json")
    assert meta["git"]["commit"] == commit and meta["git"]["branch"] == "trunk"
    assert meta["git"]["remote"] == "https://git.example.com/team/project.git"
    facts, folder = env_files(run)
    assert facts["git"]["dirty"] is True and facts["git"]["modified_files"] == 1
    assert facts["git"]["untracked_files"] == 1 and facts["git"]["diff_truncated"] is False
    diff = (folder / "git.diff").read_text()
    assert "-lr = 0.1" in diff and "+lr = 0.2" in diff
    assert "hunter2secret" not in json.dumps(meta) + json.dumps(facts)


def test_clean_repo_packed_refs_and_detached_head(repo):
    git(repo, "pack-refs", "--all")  # the branch ref now lives only in packed-refs
    commit = git(repo, "rev-parse", "HEAD")
    assert environment.git_facts(repo)["commit"] == commit
    facts, diff = environment.git_status(str(repo))
    assert facts["dirty"] is False and diff == ""
    git(repo, "checkout", "-q", "--detach")
    detached = environment.git_facts(repo / "sub" / "dir")  # any folder inside the work tree
    assert detached["commit"] == commit and detached["branch"] is None and detached["root"] == str(repo)


def test_worktree_is_followed(repo, tmp_path):
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "wt"))
    facts = environment.git_facts(tmp_path / "wt")
    assert facts["branch"] == "side" and facts["commit"] == git(repo, "rev-parse", "HEAD")
    assert facts["remote"] == "https://git.example.com/team/project.git"


def test_big_diff_is_capped_with_a_note(repo, monkeypatch):
    (repo / "train.py").write_text("x = 1\n" * 5000)
    monkeypatch.setattr(environment, "MAX_DIFF_BYTES", 1000)
    run = epochal.init(system_interval=0)
    run.finish()
    facts, folder = env_files(run)
    text = (folder / "git.diff").read_text()
    assert facts["git"]["diff_truncated"] is True and facts["git"]["diff_bytes"] == 1000
    assert text.startswith("diff --git") and "diff cut at 1000 bytes" in text and len(text) < 1100


def test_not_a_repository_is_recorded_without_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = epochal.init(system_interval=0)
    run.finish()
    assert read_json(run.dir / "run.json")["git"] == {"repo": False}
    facts, folder = env_files(run)
    assert facts["git"] == {"repo": False} and not (folder / "git.diff").exists()
    assert run.failures == {}


def test_environment_facts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    run = epochal.init(system_interval=0)
    run.finish()
    meta = read_json(run.dir / "run.json")
    assert meta["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert meta["python"]["executable"] == sys.executable and meta["cwd"] == str(tmp_path)
    expected = {k: v for k, v in os.environ.items() if k == "CUDA_VISIBLE_DEVICES" or k.startswith("EPOCHAL_")}
    assert meta["env"] == expected and meta["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    facts, folder = env_files(run)
    assert facts["cpu"]["count"] == os.cpu_count() and facts["cpu"]["model"]
    assert facts["memory_gb"] > 0 and isinstance(facts["gpus"], list)
    assert facts["frameworks"]["torch"].startswith("2.") and "scikit-learn" in facts["frameworks"]
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("pluggy==") for line in requirements)
    assert len(requirements) == facts["packages"] == len({r.split("==")[0].lower() for r in requirements})
    reader = epochal.open_run(run.id)
    assert reader.requirements()["psutil"] == __import__("psutil").__version__


def test_capture_never_imports_frameworks(tmp_path):
    code = (
        "import sys, json, epochal; run = epochal.init(dir=sys.argv[1], system_interval=0); run.finish(); "
        "facts = json.load(open(run.dir / 'environment' / 'metadata.json')); assert 'torch' in facts['frameworks']; "
        "print([m for m in ('torch', 'lightning', 'transformers', 'keras', 'jax', 'ultralytics', 'sklearn', "
        "'tensorboard', 'numpy', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    assert out.strip() == "[]"


def test_environment_plugin_can_be_blocked(monkeypatch):
    monkeypatch.setenv("EPOCHAL_DISABLE_PLUGINS", "environment")
    run = epochal.init(system_interval=0)
    run.finish()
    assert "git" not in read_json(run.dir / "run.json") and not (run.dir / "environment").exists()


def test_strip_credentials():
    assert environment.strip_credentials("https://user:pw@host/x.git") == "https://host/x.git"
    assert environment.strip_credentials("https://ghp_token123@github.com/o/r") == "https://github.com/o/r"
    assert environment.strip_credentials("ssh://git@host:22/x") == "ssh://host:22/x"
    assert environment.strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_canary_secret_never_reaches_disk(repo, monkeypatch):
    canary = "canary" + secrets.token_hex(12)  # made at run time: it is in no source file
    monkeypatch.setenv("MY_API_TOKEN", canary)
    monkeypatch.setenv("SOME_TOOL_SETTING", canary)  # an arbitrary variable, no secret-looking name
    monkeypatch.setenv("HF_TOKEN", canary)
    monkeypatch.setattr(sys, "argv", [
        "train.py", "--lr", "0.1", "--token", canary, f"--api-key={canary}", "--password", canary,
        f"--x-token={canary}", f"--db=postgres://bob:{canary}@db.local/x",
    ])
    git(repo, "remote", "set-url", "origin", f"https://bob:{canary}@git.example.com/p.git")
    (repo / "train.py").write_text(f"token = '{canary}'\n")  # an uncommitted secret in the work tree
    config = {"lr": 0.1, "api_key": canary, "nested": {"client_secret": canary, "ok": 1},
              "data_url": f"s3://key:{canary}@bucket/data", "hf_token": canary,
              "mirrors": [f"https://u:{canary}@mirror.example.com"], "accounts": [{"user": "a", "password": canary}],
              "max_new_tokens": 20, "eos_token_id": 2, "sort_key": "loss"}
    run = epochal.init(project="secrets", config=config, sinks=["tensorboard"], system_interval=0.05,
                       notes=f"db at postgres://bob:{canary}@db.local/x", tags=[f"https://u:{canary}@h", "ok"])
    with run:
        run.config.update({"password": canary, "auth_token": canary})
        run.summary["api_key"] = canary
        for step in range(3):
            run.log({"train/loss": 1.0 / (step + 1)})
        run.set_metadata(webhook=f"https://u:{canary}@hooks.example.com")
        checkpoint = repo / "ckpt.bin"
        checkpoint.write_bytes(b"weights")
        run.log_artifact(checkpoint, name="model", metadata={"token": canary})
        run.log_dataset(repo / "train.py", "code")
        raise_inside = RuntimeError(f"connecting to https://u:{canary}@db failed (password={canary})")
        run.finish("failed", error=repr(raise_inside))
    files = [p for p in run.dir.rglob("*") if p.is_file()]
    assert len(files) >= 8 and any("tfevents" in p.name for p in files)
    leaked = [str(p.relative_to(run.dir)) for p in files if canary.encode() in p.read_bytes()]
    assert leaked == []
    assert read_json(run.dir / "run.json")["argv"][:4] == ["train.py", "--lr", "0.1", "--token"]
    assert {k: read_json(run.dir / "config.json")[k] for k in ("max_new_tokens", "eos_token_id", "sort_key")} == {
        "max_new_tokens": 20, "eos_token_id": 2, "sort_key": "loss"}
    assert "RuntimeError" in read_json(run.dir / "run.json")["error"]


def test_short_or_plain_secret_values_do_not_mangle_files(repo, monkeypatch):
    monkeypatch.setenv("USE_AUTH_TOKEN", "true")  # secret-looking name, ordinary value
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock")
    (repo / "train.py").write_text("lr = 0.3\n")
    run = epochal.init(system_interval=0)
    run.finish()
    facts, folder = env_files(run)  # still valid JSON with real booleans
    assert facts["git"]["dirty"] is True and facts["git"]["diff_truncated"] is False
    assert "+lr = 0.3" in (folder / "git.diff").read_text()


@pytest.fixture
def fresh_facts():
    """The per-process cache of the slow facts emptied before and after the test."""
    host_facts.slow_facts.cache_clear()
    yield host_facts
    host_facts.slow_facts.cache_clear()


def test_slow_facts_come_from_a_child_on_this_sys_path(tmp_path, monkeypatch, fresh_facts):
    dist = tmp_path / "epochal_canary_dist-1.2.3.dist-info"  # installed only on this process's sys.path
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epochal-canary-dist\nVersion: 1.2.3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host_facts.requirements.cache_clear()
    try:
        child = host_facts._from_child()
        assert "epochal-canary-dist==1.2.3" in child["requirements"]
        assert child == host_facts._gather()  # the same facts as gathered in-process
    finally:
        host_facts.requirements.cache_clear()


@pytest.mark.parametrize("break_child", ["no interpreter", "frozen application", "timeout"])
def test_slow_facts_fall_back_in_process_when_the_child_fails(monkeypatch, fresh_facts, break_child):
    if break_child == "no interpreter":
        monkeypatch.setattr(sys, "executable", os.devnull)
    elif break_child == "frozen application":  # sys.executable is the user's program: never started again
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    else:
        monkeypatch.setattr(host_facts, "CHILD_TIMEOUT", 1e-4)
    with pytest.raises(Exception):
        host_facts._from_child()
    facts = host_facts.slow_facts()
    assert facts["requirements"] == list(host_facts.requirements()) and any(
        r.startswith("pluggy==") for r in facts["requirements"])
    assert facts["frameworks"] == host_facts.framework_versions() and facts["cpu_model"] == host_facts.cpu_model()


def test_a_child_run_shares_its_parents_environment(repo):
    (repo / "train.py").write_text("lr = 0.2\n")  # dirty: the parent's capture has a diff
    parent = epochal.init(system_interval=0)
    child = epochal.init(system_interval=0, parent=parent)
    child.finish()
    parent.finish()
    meta = read_json(child.dir / "run.json")
    assert meta["parent"] == parent.id and meta["environment_of"] == parent.id
    assert meta["git"]["commit"] == read_json(parent.dir / "run.json")["git"]["commit"]  # the cheap facts stay
    assert not (child.dir / "environment").exists()  # not captured twice
    reader, parents = epochal.open_run(child.id), epochal.open_run(parent.id)
    assert reader.environment == parents.environment and reader.environment["git"]["dirty"] is True
    assert reader.git_diff() == parents.git_diff() and "lr = 0.2" in reader.git_diff()
    assert reader.requirements()["pluggy"] == parents.requirements()["pluggy"]
    assert reader.problems() == []


def test_parent_must_be_an_open_run_in_the_same_folder(repo, tmp_path):
    parent = epochal.init(system_interval=0)
    with pytest.raises(ValueError, match="omit parent="):
        epochal.init(system_interval=0, parent=parent, dir=tmp_path / "elsewhere")
    parent.finish()
    with pytest.raises(ValueError, match="not an open run"):
        epochal.init(system_interval=0, parent=parent)


def test_environment_of_never_leads_out_of_the_project(repo):
    run = epochal.init(system_interval=0)
    run.set_metadata(environment_of="../../etc")
    run.finish()
    assert epochal.open_run(run.id).environment["git"]["repo"] is True  # its own capture, not a path outside
