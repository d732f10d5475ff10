"""`import epochal` stays light: no framework, torch, numpy or pandas."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_in_no_heavy_module():
    code = ("import sys, epochal, epochal.integrations; "
            "heavy = [m for m in ('torch', 'numpy', 'pandas', 'lightning', 'transformers', 'keras', 'tensorflow', "
            "'jax', 'sklearn', 'ultralytics', 'tensorboard') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_surface():
    import epochal

    for name in ("init", "log", "finish", "autolog", "Run", "open_run", "runs", "hookimpl", "diff"):
        assert name in epochal.__all__ and hasattr(epochal, name)
