"""The newcomer's path: the examples the demo runs work with today's API and visibly learn; its hint runs as printed.

(The sklearn example through ``demo.py`` is in tests/integrations/test_autolog.py, the YOLO one in
tests/integrations/test_ultralytics.py.)
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import epochal

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _demo():
    spec = importlib.util.spec_from_file_location("epochal_demo", EXAMPLES / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _example(name: str, root: Path, cwd: Path):
    """Run examples/<name>_example.py into project ``ex`` of ``root``; its one run."""
    env = dict(os.environ, EPOCHAL_DIR=str(root), EPOCHAL_PROJECT="ex", KERAS_BACKEND="torch",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}_example.py")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [run_dir] = [p for p in (root / "ex").iterdir() if (p / "run.json").exists()]
    return epochal.open_run(run_dir.name, dir=str(root), project="ex")


def _val_loss(run) -> list[float]:
    frame = run.history(["val/loss"]).dropna(subset=["val/loss"])
    return list(frame["val/loss"])


@pytest.mark.parametrize("name", ["lightning", "transformers"])
def test_example_learns_and_stores_its_checkpoints(name, run_root, tmp_path):
    """Each validation loss of the run is logged; the last is well below the first; checkpoints are versions."""
    run = _example(name, run_root, tmp_path)
    losses = _val_loss(run)
    assert run.status == "finished" and len(losses) >= 3, losses
    assert losses[-1] < 0.6 * losses[0], losses
    versions = [v for v in run.artifacts() if v.name == "model"]
    assert len(versions) >= 2 and any("best" in v.aliases for v in versions)  # checkpoints="all"


def test_keras_example_learns_and_logs_weight_histograms(run_root, tmp_path):
    """The demo's Keras run fills TensorBoard's Histograms tab: one histogram per weight and epoch."""
    run = _example("keras", run_root, tmp_path)
    losses = _val_loss(run)
    assert losses[-1] < losses[0], losses
    media = run.media()
    histograms = media[media["type"] == "histogram"]
    assert len(histograms) and all(k.startswith("weights/") for k in histograms["key"])
    assert sorted(set(histograms["step"])) == sorted(set(run.history(["val/loss"]).dropna()["step"]))


def test_demo_hint_names_a_command_the_users_shell_finds(tmp_path, monkeypatch):
    """Under nox the venv is on this process's PATH only: the hint gives its full path; else plain ``epochal``."""
    demo = _demo()
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "epochal"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]))

    monkeypatch.setenv("NOX_CURRENT_SESSION", "demo")
    assert demo._epochal_command() == str(script)
    monkeypatch.delenv("NOX_CURRENT_SESSION")
    assert demo._epochal_command() == "epochal"  # an activated venv: its epochal is the user's
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert demo._epochal_command() == str(script)
    script.unlink()
    assert demo._epochal_command() == f"{sys.executable} -m epochal"


def test_demo_prints_commands_that_run_as_printed(run_root, tmp_path):
    """Each command of the closing hint (ls, show, diff, report) runs as printed; the report it names exists."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), "--only", "sklearn", "--dir", str(run_root)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    hint = done.stdout.split("\nsee them in TensorBoard:", 1)[1]
    lines = [line.split(":  ", 1)[-1].strip() for line in hint.splitlines()]  # "label:   command" or "   command"
    commands = [line for line in lines if any(f" {verb} " in f"{line} " for verb in ("ls", "show", "diff"))]
    assert len(commands) == 3, hint
    for command in commands:
        ran = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
        assert ran.returncode == 0 and ran.stdout.strip(), (command, ran.stdout, ran.stderr)
        if " diff " in command:  # two runs alike but for a value: the grid search's candidates, C apart
            assert "clf__C" in ran.stdout and "<missing>" not in ran.stdout, ran.stdout
    report = Path(hint.split("compare them offline:", 1)[1].split()[0])
    assert report.is_file() and report.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert "test/accuracy@X_test = " in done.stdout  # a Pipeline's headline: its test accuracy
