"""Shared test set-up: every test gets its own run root and leaves no run open."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("EPOCHAL_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(autouse=True)
def run_root(tmp_path, monkeypatch):
    """The run root of this test (also ``EPOCHAL_DIR``), inside pytest's tmp_path."""
    root = tmp_path / "runs"
    monkeypatch.setenv("EPOCHAL_DIR", str(root))
    for name in ("EPOCHAL_PROJECT", "EPOCHAL_MODE", "EPOCHAL_RUN_ID", "EPOCHAL_SINKS", "EPOCHAL_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    yield root
    from epochal.run import _active

    for run in list(_active):
        run.finish()
