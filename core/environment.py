"""Environment capture (a built-in plugin): python, platform, host, argv, git, packages, hardware names.

At ``init`` (training thread, a fraction of a millisecond) run.json gets the cheap
facts: python, platform, user, cwd, redacted argv, allow-listed environment variables
and the git commit, branch and remote read straight from ``.git`` (no subprocess).

Off the training thread (:func:`epochal_run_start`, rank 0 only) ``environment/`` gets:

- ``metadata.json``: everything above plus git dirty flag and untracked count, CPU model,
  memory, GPU names, versions of the ML frameworks present (read from package metadata,
  never by importing them);
- ``requirements.txt``: every installed distribution, ``name==version``;
- ``git.diff``: the uncommitted changes against HEAD, capped at ``MAX_DIFF_BYTES`` with a
  note when cut.

A run opened with ``parent=`` (an open run of this process: a search candidate's) shares
its parent's capture: run.json gets the cheap facts and ``environment_of`` (the parent's id),
and no ``environment/`` is written; the reader (:class:`epochal.query.RunReader`) follows it.

Packages, framework versions, CPU and GPU names are gathered once per process in a
short-lived child Python, off this process's GIL (:mod:`epochal.host_facts`).

Secrets never reach disk: the environment is an allow-list, argv values after secret
flags and URL credentials are redacted (:mod:`epochal.redact`), and every file written
here is scrubbed of the values of secret-named environment variables and argv flags.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from .hookspecs import hookimpl
from .host_facts import FRAMEWORKS, cpu_model, framework_versions, gpu_names, requirements, slow_facts
from .redact import redact, redact_argv, redact_text, safe_environment
from .store import folder_inside

__all__ = [
    "EnvironmentPlugin", "basic_metadata", "git_facts", "git_status", "requirements", "framework_versions",
    "cpu_model", "gpu_names", "strip_credentials", "ENV_DIR", "ENVIRONMENT_OF", "MAX_DIFF_BYTES", "FRAMEWORKS",
]

ENV_DIR = "environment"
ENVIRONMENT_OF = "environment_of"  # run.json: the id of the sibling run whose environment/ this run shares
MAX_DIFF_BYTES = 1 << 20
GIT_TIMEOUT = 20.0
_URL_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def strip_credentials(url: str) -> str:
    """A remote URL without ``user:password@`` (or ``token@``); scp-like ``git@host:repo`` stays."""
    return _URL_CREDENTIALS.sub(lambda m: m.group("scheme"), url.strip())


# -- git, read from files (cheap, safe on the training thread) --------------------------------
def _find_git_dir(start: Path) -> tuple[Path, Path] | None:
    """(work tree, git dir) of the repository holding ``start``, or None."""
    for folder in (start, *start.parents):
        candidate = folder / ".git"
        try:
            if candidate.is_dir():
                return folder, candidate
            if candidate.is_file():
                text = candidate.read_text(encoding="utf-8", errors="replace").strip()
                if text.startswith("gitdir:"):
                    git_dir = Path(text[len("gitdir:"):].strip())
                    return folder, (git_dir if git_dir.is_absolute() else (folder / git_dir)).resolve()
        except OSError:
            return None
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _resolve_ref(git_dir: Path, common: Path, ref: str) -> str | None:
    for base in (git_dir, common):
        text = _read(base / ref)
        if text and text.strip():
            return text.strip()
    for line in (_read(common / "packed-refs") or "").splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[1].strip() == ref:
            return parts[0].strip()
    return None


def _remote_url(common: Path) -> str | None:
    urls: dict[str, str] = {}
    section = None
    for line in (_read(common / "config") or "").splitlines():
        line = line.strip()
        match = re.match(r'^\[\s*remote\s+"(.+)"\s*\]$', line)
        if match:
            section = match.group(1)
        elif line.startswith("["):
            section = None
        elif section and re.match(r"^url\s*=", line):
            urls.setdefault(section, line.split("=", 1)[1].strip())
    url = urls.get("origin") or next(iter(urls.values()), None)
    return strip_credentials(url) if url else None


def git_facts(cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit, branch and remote of the repository holding ``cwd``; ``{"repo": False}`` outside one."""
    found = _find_git_dir(Path(cwd or os.getcwd()).absolute())
    if found is None:
        return {"repo": False}
    root, git_dir = found
    common_text = _read(git_dir / "commondir")
    common = (git_dir / common_text.strip()).resolve() if common_text else git_dir
    head = (_read(git_dir / "HEAD") or "").strip()
    branch = commit = None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref.removeprefix("refs/heads/")
        commit = _resolve_ref(git_dir, common, ref)
    elif re.fullmatch(r"[0-9a-f]{40,64}", head):
        commit = head
    return {"repo": True, "root": str(root), "commit": commit, "branch": branch, "remote": _remote_url(common)}


# -- git, through the git command (off the training thread) --------------------------------
def _git(root: str, *args: str, limit: int | None = None) -> tuple[int, bytes, bool]:
    """Run git in ``root``: (return code, stdout up to ``limit`` bytes, whether output was cut)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    process = subprocess.Popen(
        ["git", "-C", root, "--no-pager", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, env=env,
    )
    watchdog = threading.Timer(GIT_TIMEOUT, process.kill)  # a hung git (network drive) must not hang the lane
    watchdog.daemon = True
    watchdog.start()
    stdout = process.stdout
    assert stdout is not None  # stdout=PIPE
    try:
        data = stdout.read(limit + 1) if limit is not None else stdout.read()
        cut = limit is not None and len(data) > limit
        if cut:
            process.kill()
            data = data[:limit]
        code = process.wait(timeout=GIT_TIMEOUT)
        return (0 if cut else code), data, cut
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        stdout.close()


def git_status(root: str, max_diff_bytes: int = MAX_DIFF_BYTES) -> tuple[dict[str, Any], str]:
    """(dirty flag and counts, uncommitted diff text capped at ``max_diff_bytes``) of the repo at ``root``."""
    if shutil.which("git") is None:
        return {"dirty": None, "note": "git command not found"}, ""
    code, out, _ = _git(root, "status", "--porcelain", "--untracked-files=normal")
    if code != 0:
        return {"dirty": None, "note": "git status failed"}, ""
    lines = out.decode("utf-8", "replace").splitlines()
    untracked = sum(1 for line in lines if line.startswith("??"))
    facts: dict[str, Any] = {"dirty": len(lines) - untracked > 0, "modified_files": len(lines) - untracked,
                             "untracked_files": untracked}
    if not facts["dirty"]:  # no tracked file changed: the diff is empty, no second git process needed
        facts.update(diff_bytes=0, diff_truncated=False)
        return facts, ""
    code, diff, cut = _git(root, "diff", "HEAD", "--no-color", "--no-ext-diff", limit=max_diff_bytes)
    if code != 0:  # no commit yet: the diff of the index and work tree
        code, diff, cut = _git(root, "diff", "--no-color", "--no-ext-diff", limit=max_diff_bytes)
    text = diff.decode("utf-8", "replace")
    if cut:
        text += f"\n# epochal: diff cut at {max_diff_bytes} bytes; the rest was not stored\n"
    facts.update(diff_bytes=len(diff), diff_truncated=cut)
    return facts, text


# -- the facts -----------------------------------------------------------------------------------
def basic_metadata() -> dict[str, Any]:
    """Cheap facts about this process, gathered synchronously at ``init`` (never raises)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = None
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the working folder was deleted
        cwd = None
    try:
        git = git_facts(cwd) if cwd else {"repo": False}
    except Exception as exc:
        git = {"repo": None, "note": f"reading .git failed: {exc!r}"}
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "implementation": platform.python_implementation()},
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "user": user,
        "cwd": cwd,
        "argv": redact_argv(sys.argv),
        "env": safe_environment(os.environ),
        "cpu_count": os.cpu_count(),
        "git": git,
    }


def _write_text(path: Path, text: str) -> None:
    """Replace ``path`` with redacted ``text`` (temp file opened without following links, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.w.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(redact_text(text))
    os.replace(tmp, path)


class EnvironmentPlugin:
    """Adds environment facts to run.json and writes ``environment/`` files off the training thread."""

    def __init__(self) -> None:
        self._basic: dict[str, Any] | None = None
        self._started = time.time()

    @hookimpl
    def epochal_run_metadata(self, run) -> dict[str, Any]:
        self._basic = basic_metadata()
        self._started = time.time()
        parent = getattr(run, "parent", None)
        return {**self._basic, ENVIRONMENT_OF: parent} if parent else self._basic

    @hookimpl
    def epochal_run_start(self, run) -> None:
        if not getattr(run, "is_owner", True) or getattr(run, "parent", None):
            return  # a child run shares its parent's capture (made in this process)
        capture(Path(run.dir), self._basic, self._started)


def capture(run_dir: Path, basic: Mapping[str, Any] | None = None, started: float | None = None) -> dict[str, Any]:
    """Write ``environment/metadata.json``, ``requirements.txt`` and ``git.diff`` into ``run_dir``."""
    folder = folder_inside(run_dir, ENV_DIR)  # never through a symlink planted in the run folder
    facts = dict(basic or basic_metadata())
    git = dict(facts.get("git") or {"repo": False})
    diff = ""
    if git.get("repo") and git.get("root"):
        status, diff = git_status(git["root"], MAX_DIFF_BYTES)
        git.update(status)
    try:
        memory_gb = round(__import__("psutil").virtual_memory().total / 1024**3, 2)
    except Exception:
        memory_gb = None
    slow = slow_facts()  # gathered in a child process: off this process's GIL
    facts.update(
        started=started, git=git, cpu={"model": slow["cpu_model"], "count": os.cpu_count()}, memory_gb=memory_gb,
        gpus=list(slow["gpus"]), frameworks=dict(slow["frameworks"]), packages=len(slow["requirements"]),
    )
    _write_text(folder / "requirements.txt", "\n".join(slow["requirements"]) + "\n")
    if git.get("repo"):
        _write_text(folder / "git.diff", diff)
    _write_text(folder / "metadata.json", json.dumps(redact(facts), indent=1, default=repr))
    return facts
