"""``epochal.autolog()``: one call, then plain training code in every framework is tracked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings

import pytest
from epochal import integrations
from epochal.query import RunReader

FRAMEWORKS = ("sklearn", "keras", "lightning", "transformers", "ultralytics")

# Plain training code: after the one autolog() call nothing here mentions epochal. Each block
# reports which run folders its training added (read from disk, not through epochal).
SCRIPT = r'''
import json, os, sys, tempfile
from pathlib import Path

import epochal
epochal.autolog()
assert epochal.integrations.enabled() == [], "autolog() imported a framework"

root = Path(os.environ["EPOCHAL_DIR"])
work = Path(tempfile.mkdtemp(prefix="autolog-"))
found = {}

def runs():
    return {str(p) for p in root.glob("*/*") if (p / "run.json").exists()}

def track(name, train):
    before = runs()
    train()
    found[name] = sorted(runs() - before)

def sklearn():
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    x = np.random.default_rng(0).normal(size=(60, 4))
    LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))

def keras():
    import numpy as np
    import keras
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :1], epochs=2, batch_size=16, verbose=0)

def lightning():
    import torch
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
        def training_step(self, batch, index):
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x = torch.randn(32, 4)
    data = DataLoader(TensorDataset(x, x[:, :1]), batch_size=8)
    Trainer(max_epochs=2, log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(work / "pl")).fit(Tiny(), data)

def transformers():
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    ids = torch.randint(0, 50, (16, 8))
    rows = [{"input_ids": i, "labels": int(i[0] % 2)} for i in ids]
    args = TrainingArguments(output_dir=str(work / "hf"), max_steps=4, per_device_train_batch_size=4,
                             logging_steps=1, report_to="none", save_strategy="no", use_cpu=True)
    Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=rows).train()

def ultralytics():
    import numpy as np
    from PIL import Image
    from ultralytics import YOLO

    data = work / "boxes"
    for split in ("train", "val"):
        (data / "images" / split).mkdir(parents=True)
        (data / "labels" / split).mkdir(parents=True)
        for i in range(4):
            image = np.full((64, 64, 3), 40, np.uint8)
            image[10 + i:40 + i, 12:44] = (220, 60, 60)
            Image.fromarray(image).save(data / "images" / split / f"{i}.png")
            (data / "labels" / split / f"{i}.txt").write_text(f"0 {(28) / 64:.3f} {(25 + i) / 64:.3f} 0.5 0.469\n")
    (data / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames:\n  0: box\n")
    YOLO("yolov8n.yaml").train(data=str(data / "data.yaml"), epochs=1, imgsz=64, batch=4, plots=False, amp=False,
                               workers=0, device="cpu", project=str(work / "yolo"), name="boxes", verbose=False)

for name in sys.argv[1:]:
    track(name, globals()[name])
found["enabled"] = epochal.integrations.enabled()
epochal.autolog(disable=True)
found["disabled"] = epochal.integrations.enabled()
track("after_disable", sklearn)
print("RESULT " + json.dumps(found))
'''


def test_autolog_tracks_every_framework(run_root, tmp_path):
    env = {
        **os.environ, "KERAS_BACKEND": "torch", "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "yolo"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "EPOCHAL_DIR": str(run_root), "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT, *FRAMEWORKS], check=False, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
    assert result["enabled"] == sorted(FRAMEWORKS)
    assert result["disabled"] == [] and result["after_disable"] == []
    for framework in FRAMEWORKS:
        assert len(result[framework]) == 1, (framework, result[framework])
        run = RunReader(result[framework][0])
        assert run.status == "finished", (framework, run.metadata.get("error"))
        records = run.records()
        assert records, f"{framework}: no metrics"
        names = {k for r in records for k in r} - {"step", "time", "epoch"}
        assert any(n.startswith(("train/", "val/")) for n in names), (framework, names)


# -- the post-import hook and version check, with a fake framework ------------------------------------
@pytest.fixture
def fake_framework(tmp_path, monkeypatch):
    """A framework package not yet imported, and a fake integration module that records its calls."""
    (tmp_path / "epochal_fakefw").mkdir()
    (tmp_path / "epochal_fakefw" / "__init__.py").write_text("READY = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    module = types.ModuleType("epochal.integrations.fakefw")
    module.autolog = lambda disable=False, **kwargs: calls.append((disable, kwargs, "epochal_fakefw" in sys.modules))
    monkeypatch.setitem(sys.modules, "epochal.integrations.fakefw", module)
    monkeypatch.setattr(integrations, "FRAMEWORKS", {"fakefw": ("epochal_fakefw", "epochal-fakefw", "1.0")})
    yield calls
    integrations.autolog(disable=True)
    sys.modules.pop("epochal_fakefw", None)


def test_a_framework_is_hooked_when_it_is_imported(fake_framework):
    integrations.autolog(project="p")
    assert fake_framework == [] and integrations.enabled() == []  # nothing imported yet
    import epochal_fakefw

    assert epochal_fakefw.READY
    assert fake_framework == [(False, {"project": "p"}, True)]
    assert integrations.enabled() == ["fakefw"]
    assert type(epochal_fakefw.__loader__).__name__ != "_HookedLoader"  # the real loader is put back
    assert not any(type(f).__name__ == "_PostImportFinder" for f in sys.meta_path)
    integrations.autolog(disable=True)
    assert fake_framework[-1][0] is True and integrations.enabled() == []


def test_an_imported_framework_is_enabled_at_once_and_missing_ones_skipped(fake_framework, monkeypatch):
    import epochal_fakefw  # noqa: F401

    monkeypatch.setitem(integrations.FRAMEWORKS, "absent", ("epochal_no_such_fw", "nope", "1.0"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a framework that is not installed is skipped silently
        integrations.autolog()
    assert integrations.enabled() == ["fakefw"] and len(fake_framework) == 1


def test_an_old_framework_gets_one_warning(monkeypatch):
    monkeypatch.setattr(integrations, "FRAMEWORKS", {"pluggy": ("pluggy", "pluggy", "999.0")})
    monkeypatch.setattr(integrations, "_warned", set())
    with pytest.warns(UserWarning, match=r"pluggy .* older than the 999.0"):
        integrations.autolog()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        integrations.autolog()  # said once
    assert integrations.enabled() == []
    integrations.autolog(disable=True)


def test_demo_runs_an_example_and_shows_the_table(run_root, tmp_path):
    """examples/demo.py (here with one example): runs it into the root, prints the table and the tb command."""
    demo = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "demo.py")
    done = subprocess.run([sys.executable, demo, "--only", "sklearn", "--dir", str(run_root)], check=False,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[1/1] sklearn" in done.stdout and " ok (" in done.stdout
    assert "finished" in done.stdout and "epochal tb" in done.stdout and str(run_root) in done.stdout
    assert any(run_root.glob("*/*/run.json"))


def test_options_reach_only_the_integrations_that_take_them(run_root):
    import numpy as np
    import sklearn  # noqa: F401  (imported: autolog switches sklearn on at once)
    from sklearn.linear_model import LogisticRegression

    import epochal

    try:
        epochal.autolog(checkpoints=False, log_plots=False, project="opts")  # checkpoints: not sklearn's
        assert "sklearn" in integrations.enabled()
        x = np.random.default_rng(0).normal(size=(40, 3))
        LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    finally:
        epochal.autolog(disable=True)
    (run,) = list((run_root / "opts").iterdir())
    assert not (run / "media").exists()  # log_plots=False reached sklearn


def test_an_option_no_integration_takes_is_a_clear_error():
    import epochal

    with pytest.raises(TypeError, match=r"\['checkpoint'\].*'checkpoints'"):
        epochal.autolog(checkpoint="best")
    assert integrations.enabled() == []


@pytest.mark.parametrize("name, target", [
    ("lightning", "EpochalLogger"), ("transformers", "EpochalCallback"), ("keras", "EpochalCallback"),
    ("ultralytics", "EpochalCallbacks"), ("sklearn", "autolog"),
])
def test_the_options_table_matches_what_each_integration_takes(name, target, monkeypatch):
    import importlib
    import inspect

    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    takes = inspect.signature(getattr(importlib.import_module(f"epochal.integrations.{name}"), target)).parameters
    assert integrations.OPTIONS[name] <= set(takes)
