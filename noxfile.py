"""Sessions behind the README's two commands (``demo``, ``tests``) and the rest of the work.

    python -m nox -s tests      everything CI runs
    python -m nox -s demo       tiny models in every framework, tracked, viewable in TensorBoard
    python -m nox -s bench      side-by-side benchmarks against the anchors
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PYTHON = "3.11"
# torch/torchvision lie on this machine's disk; never ask for newer ones (see README).
TORCH_PIN = ["torch<=2.14.1", "torchvision<=0.29.1"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "YOLO_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def _install(session: nox.Session, extras: str) -> None:
    session.install(*TORCH_PIN) if any(x in extras for x in ("all", "lightning", "transformers", "ultralytics")) else None
    session.install("-e", f".[{extras}]")


def _install_chromium(session: nox.Session) -> None:
    """Debian's chromium for the report's browser tests, when it is missing (CI runs as root)."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    session.run("apt-get", "update", external=True)
    session.run("apt-get", "install", "-y", "chromium", external=True,
                env={"DEBIAN_FRONTEND": "noninteractive"})


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, every integration included (CI runs this)."""
    _install(session, "all,test")
    _install_chromium(session)
    session.run("pytest", *(session.posargs or ["tests"]), env=OFFLINE)


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """The core alone, with no framework installed: proves `import epochal` needs nothing heavy."""
    session.install("-e", ".[test,query]")
    session.run("pytest", "tests/core", *session.posargs, env=OFFLINE)


@nox.session(python=PYTHON)
@nox.parametrize("integration", ["lightning", "transformers", "keras", "ultralytics", "sklearn", "tensorboard"])
def integration(session: nox.Session, integration: str) -> None:
    """One integration's tests with only its extra installed."""
    _install(session, f"{integration},test,query,tensorboard")
    session.run("pytest", f"tests/integrations/test_{integration}.py", *session.posargs, env=OFFLINE)


@nox.session(python=PYTHON)
@nox.parametrize("backend", ["torch", "jax"])
def keras(session: nox.Session, backend: str) -> None:
    """The Keras callback on one backend."""
    _install(session, "keras,test,query")
    session.install("jax" if backend == "jax" else TORCH_PIN[0])
    session.run("pytest", "tests/integrations/test_keras.py", *session.posargs,
                env={**OFFLINE, "EPOCHAL_KERAS_BACKENDS": backend})


@nox.session(python=PYTHON)
@nox.parametrize("editable", [True, False])
def install(session: nox.Session, editable: bool) -> None:
    """`pip install .` and `pip install -e .` both give a working `epochal` package and command."""
    session.install(*(["-e", "."] if editable else ["."]))
    session.chdir(session.create_tmp())
    session.run("python", "-c", "import epochal, epochal.integrations, epochal.sinks; print(epochal.__file__)")
    session.run("epochal", "--help", silent=True)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Train tiny models in every framework, track them, print how to view them in TensorBoard."""
    _install(session, "all")
    session.run("python", "examples/demo.py", *session.posargs, env=OFFLINE)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with the anchors (wandb, mlflow, trackio, dvclive, TensorBoard)."""
    _install(session, "all,test")
    session.install("-r", "benchmarks/requirements.txt")
    _install_chromium(session)  # the report topic opens each report in it
    session.run("python", "-m", "benchmarks", *session.posargs, env=OFFLINE)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the code; mypy over the package (core/ as ``epochal``, integrations/ as ``epochal.integrations``)."""
    session.install("ruff", "mypy")
    session.run("ruff", "check", "core", "integrations", "tests", "examples", "benchmarks")
    # mypy reads the package under its import name: a tree of links, as the installed layout maps it
    tree = Path(session.create_tmp()) / "typed"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "epochal").mkdir(parents=True)
    for item in Path("core").iterdir():
        (tree / "epochal" / item.name).symlink_to(item.resolve())
    (tree / "epochal" / "integrations").symlink_to(Path("integrations").resolve())
    session.run("mypy", "--config-file", str(Path("pyproject.toml").resolve()), "-p", "epochal",
                env={"MYPYPATH": str(tree)})
