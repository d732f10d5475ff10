"""Lightning's own logger suite (tests_pytorch/loggers/test_all.py), rewritten for EpochalLogger.

The cases that concern a logger: what reaches it across fit then test, pickling the logger and
a trainer holding it, the tuners leaving it in place, lazy creation and rank-zero behaviour
under ddp_spawn, ``prefix=``, the default name, and several loggers on one trainer.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.tuner.tuning import Tuner

import epochal
from epochal.integrations.lightning import EpochalLogger


def quiet(**kwargs) -> dict:
    return dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **kwargs)


class Recording(EpochalLogger):
    """EpochalLogger that also remembers what Lightning handed it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[tuple[int, dict]] = []

    def log_metrics(self, metrics, step=None) -> None:
        super().log_metrics(metrics, step)
        self.history.append((step, dict(metrics)))


class FitThenTest(BoringModel):
    def training_step(self, batch, batch_idx):
        loss = self.step(batch)
        self.log("train_some_val", loss)
        return {"loss": loss}

    def on_validation_epoch_end(self):
        self.log_dict({"early_stop_on": torch.tensor(1.0), "val_loss": torch.tensor(0.5)})

    def on_test_epoch_end(self):
        self.log("test_loss", torch.tensor(2.0))


def test_fit_then_test_reach_the_logger_and_one_run(run_root, tmp_path):
    logger = Recording(project="suite")
    trainer = Trainer(max_epochs=1, logger=logger, limit_train_batches=1, limit_val_batches=1, log_every_n_steps=1,
                      default_root_dir=tmp_path, **quiet())
    trainer.fit(FitThenTest())
    trainer.test()

    assert [(s, sorted(m)) for s, m in logger.history] == [
        (0, ["epoch", "train_some_val"]), (0, ["early_stop_on", "epoch", "val_loss"]), (1, ["epoch", "test_loss"])]
    run = epochal.open_run(logger.version, dir=run_root)
    stored = [(r["step"], sorted(k for k in r if k not in ("time", "step", "epoch"))) for r in run.records()]
    assert stored == [(0, ["train/some_val"]), (0, ["train/early_stop_on", "val/loss"]), (1, ["test/loss"])]
    assert [r["epoch"] for r in run.records()] == [0, 0, 1]
    assert run.status == "finished" and run.metadata["resumed"] == 1  # test() reopened the fit's run
    assert [p.name for p in (run_root / "suite").iterdir()] == [logger.version]


def test_the_logger_and_a_trainer_holding_it_pickle(run_root, tmp_path):
    logger = EpochalLogger(project="suite")
    _ = logger.experiment
    logger.log_metrics({"a": 1})
    logger.save()
    pickle.dumps(logger)

    trainer = Trainer(max_epochs=1, logger=logger, default_root_dir=tmp_path, **quiet())
    restored = pickle.loads(pickle.dumps(trainer))
    restored.logger.log_metrics({"acc": 1.0})
    assert restored.logger.name == logger.name and restored.logger.save_dir == logger.save_dir
    assert restored.logger.version == logger.version
    restored.logger.finalize("success")
    run = epochal.open_run(logger.version, dir=run_root)
    assert [sorted(k for k in r if k.startswith("train/")) for r in run.records()] == [["train/a"], ["train/acc"]]


@pytest.mark.parametrize("tuner_method", ["lr_find", "scale_batch_size"])
def test_the_tuners_leave_the_logger_in_place(tmp_path, tuner_method):
    class Tunable(BoringModel):
        def __init__(self, lr=0.1, batch_size=2):
            super().__init__()
            self.save_hyperparameters()

    model = Tunable()
    logger = EpochalLogger(project="suite")
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, logger=logger, **quiet())
    getattr(Tuner(trainer), tuner_method)(model, **({"max_trials": 2} if tuner_method == "scale_batch_size" else
                                                  {"num_training": 5}))
    assert trainer.logger is logger and model.logger is logger


def test_prefix_joins_keys_as_lightnings_loggers_do(run_root):
    logger = EpochalLogger(project="suite", prefix="tmp")
    logger.log_metrics({"test": 1.0}, step=0)
    logger.finalize("success")
    run = epochal.open_run(logger.version, dir=run_root)
    assert run.records()[0]["tmp/train/test"] == 1.0 and run.records()[0]["step"] == 0
    assert run.metadata["name_map"] == {"tmp/train/test": "tmp-test"}  # Lightning's "tmp-test"


def test_default_name_save_dir_version_and_log_dir(run_root, monkeypatch):
    logger = EpochalLogger()
    assert logger.name == "default" and logger.save_dir == str(run_root) and logger.version is None
    assert logger.log_dir is None
    run = logger.experiment
    assert logger.version == run.id and logger.log_dir == str(run.dir) == os.path.join(logger.root_dir, run.id)
    logger.finalize("success")
    monkeypatch.setenv("EPOCHAL_PROJECT", "from-env")
    assert EpochalLogger().name == "from-env" and EpochalLogger(id="r-7").version == "r-7"


def test_several_loggers_on_one_trainer_each_get_every_point(run_root, tmp_path):
    first, second = EpochalLogger(project="one"), EpochalLogger(project="two")
    reference = CSVLogger(tmp_path / "csv")
    trainer = Trainer(max_epochs=1, logger=[first, second, reference], limit_train_batches=3, limit_val_batches=1,
                      log_every_n_steps=1, default_root_dir=tmp_path, **quiet())
    trainer.fit(FitThenTest())
    runs = [epochal.open_run(lg.version, dir=run_root) for lg in (first, second)]
    assert runs[0].id != runs[1].id and {r.project for r in runs} == {"one", "two"}
    assert [r["step"] for r in runs[0].records()] == [r["step"] for r in runs[1].records()] == [0, 1, 2, 2]
    assert all(run.status == "finished" for run in runs)
    assert trainer.log_dir == first.save_dir  # Lightning takes the first (non-CSV/TensorBoard) logger's save_dir


class LazyAndRankZero(Callback):
    """The run exists by ``setup``; metrics are rank zero's (the others' handle writes only hardware samples)."""

    def setup(self, trainer, pl_module, stage=None):
        assert trainer.logger.experiment is not None and trainer.logger.version

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        run = trainer.logger.experiment
        assert run.is_owner == trainer.is_global_zero and run.rank == trainer.global_rank
        os.write(1, f"RANK {trainer.global_rank} {run.id}\n".encode())  # one write: ranks share stdout


SPAWN = """
import sys
sys.path.insert(0, {here!r})
from lightning.pytorch import Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from test_lightning_suite import LazyAndRankZero, quiet
from epochal.integrations.lightning import EpochalLogger

if __name__ == "__main__":
    trainer = Trainer(logger=EpochalLogger(project="spawned"), strategy="ddp_spawn", devices=2, max_steps=1,
                      callbacks=[LazyAndRankZero()], default_root_dir={root!r}, **quiet())
    trainer.fit(BoringModel())
"""


def test_lazy_experiment_and_rank_zero_under_ddp_spawn(run_root, tmp_path):
    script = tmp_path / "spawned.py"
    script.write_text(textwrap.dedent(SPAWN.format(here=str(Path(__file__).parent), root=str(tmp_path))))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EPOCHAL_DIR": str(run_root), "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = dict(re.findall(r"RANK (\d+) (\d{8}-\d{6}-[0-9a-f]{6})", done.stdout))
    assert set(ranks) == {"0", "1"} and len(set(ranks.values())) == 1  # both ranks in one run
    run = epochal.open_run(ranks["0"], project="spawned", dir=run_root)
    assert run.status == "finished" and run.metadata["world_size"] == 2
