"""EpochalLogger with real Lightning fits: a tiny regression module on synthetic data, CPU only."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from argparse import Namespace
from pathlib import Path

import epochal
import pytest
import torch
from epochal.integrations import lightning as integration
from epochal.integrations.lightning import EpochalLogger
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

BATCHES = 4  # per epoch


class Tiny(LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8, fail_at: int = -1, interrupt_at: int = -1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        self.net[0].bias.requires_grad_(False)  # so trainable < total

    def training_step(self, batch, index):
        if self.global_step == self.hparams.fail_at:
            raise RuntimeError("boom in training_step")
        if self.global_step == self.hparams.interrupt_at:
            raise KeyboardInterrupt
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader() -> DataLoader:
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def trainer(loggers, epochs: int = 2, callbacks=(), devices: int = 1, **kwargs) -> Trainer:
    return Trainer(
        max_epochs=epochs, logger=loggers, callbacks=list(callbacks), accelerator="cpu", devices=devices,
        limit_train_batches=BATCHES, limit_val_batches=2, log_every_n_steps=1, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )


def csv_points(logger: CSVLogger, epoch: str = "epoch") -> dict[str, list[tuple[int, int]]]:
    """What Lightning handed its own CSVLogger: metric -> [(step, epoch)] (``epoch``: that column's name)."""
    out: dict[str, list[tuple[int, int]]] = {}
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key not in ("step", epoch) and value != "":
                    out.setdefault(key, []).append((int(row["step"]), int(row[epoch])))
    return out


def stored_points(run, key: str) -> list[tuple[int, int]]:
    return [(int(r["step"]), int(r["epoch"])) for r in run.records(key)]


def test_fit_records_metrics_at_lightning_steps_hparams_checkpoints_and_finishes(run_root, tmp_path):
    logger = EpochalLogger(project="lit", name="tiny", checkpoints="all")
    reference = CSVLogger(tmp_path / "csv")
    fit = trainer([logger, reference], callbacks=[ModelCheckpoint(monitor="val_loss", save_last=True)])
    fit.fit(Tiny(), loader(), loader())

    run = epochal.open_run(logger.version, dir=run_root)
    assert run.status == "finished" and run.name == "tiny" and run.project == "lit"
    assert logger.log_dir == str(run.dir) and logger.save_dir == str(run_root) and logger.name == "lit"
    # steps and epochs exactly as Lightning gave them (to its CSVLogger too)
    lightning = csv_points(reference)
    for original, canonical in [("train_loss_step", "train/loss"), ("train_loss_epoch", "train/loss_epoch"),
                                ("val_loss", "val/loss")]:
        assert stored_points(run, canonical) == lightning[original], canonical
    assert [s for s, _ in stored_points(run, "train/loss")] == list(range(fit.global_step))
    assert {e for _, e in stored_points(run, "val/loss")} == {0, 1}
    assert {k for r in run.records() for k in r} == {"step", "time", "epoch", "train/loss", "train/loss_epoch",
                                                     "val/loss"}  # epoch is a field of each point, not a chart
    assert run.metadata["name_map"]["train/loss"] == "train_loss_step"
    # hyperparameters from save_hyperparameters() and model facts
    config = run.config
    assert config["lr"] == 0.05 and config["hidden"] == 8
    assert config["model"]["class"] == "Tiny"
    assert config["model"]["parameters"] == 4 * 8 + 8 + 8 + 1
    assert config["model"]["trainable_parameters"] == config["model"]["parameters"] - 8
    # checkpoints: Lightning's default folder is inside the run; each save is an artifact version
    checkpoint_cb = fit.checkpoint_callback
    assert Path(checkpoint_cb.dirpath) == run.dir / "checkpoints"
    versions = [v for v in run.artifacts() if v.name == "model"]
    assert len(versions) == 2  # one per epoch (top-k save; last.ckpt of the same step is not stored twice)
    by_alias = {a: v for v in versions for a in v.aliases}
    assert by_alias["latest"].version == versions[-1].version
    best_score = min(v.metadata["score"] for v in versions)
    assert by_alias["best"].metadata["score"] == best_score == pytest.approx(float(checkpoint_cb.best_model_score))
    assert all(v.metadata["monitor"] == "val_loss" and v.type == "model" for v in versions)
    assert run.path("model", "best").name == Path(checkpoint_cb.best_model_path).name
    # the run id travels inside Lightning's checkpoint
    saved = torch.load(checkpoint_cb.last_model_path, weights_only=False)
    assert saved["epochal"] == {"project": "lit", "id": logger.version, "root": str(run_root)}


def test_by_default_the_best_checkpoint_is_the_model_artifact(run_root):
    logger = EpochalLogger(project="lit")
    fit = trainer(logger, callbacks=[ModelCheckpoint(monitor="val_loss", save_top_k=2)])
    fit.fit(Tiny(), loader(), loader())
    versions = epochal.open_run(logger.version, dir=run_root).artifacts()
    assert len(versions) == 1 and set(versions[0].aliases) == {"latest", "best"}
    assert versions[0].metadata["filename"] == Path(fit.checkpoint_callback.best_model_path).name
    assert versions[0].metadata["score"] == pytest.approx(float(fit.checkpoint_callback.best_model_score))


@pytest.mark.parametrize("checkpoints, expected", [("best", 1), ("last", 1), (False, 0)])
def test_a_default_trainer_without_a_monitor_records_its_last_checkpoint(run_root, checkpoints, expected):
    logger = EpochalLogger(project="lit", checkpoints=checkpoints)
    fit = trainer(logger, epochs=2)  # Lightning's own ModelCheckpoint: nothing monitored
    fit.fit(Tiny(), loader(), loader())
    versions = epochal.open_run(logger.version, dir=run_root).artifacts()
    assert len(versions) == expected
    if expected:
        assert versions[0].metadata["filename"] == Path(fit.checkpoint_callback.last_model_path
                                                        or fit.checkpoint_callback.best_model_path).name
        assert versions[0].metadata["step"] == 2 * BATCHES


def test_prefix_names_metrics_as_lightnings_loggers_join_them(run_root, tmp_path):
    logger = EpochalLogger(project="lit", prefix="fit")
    reference = CSVLogger(tmp_path / "csv", prefix="fit")
    trainer([logger, reference]).fit(Tiny(), loader(), loader())
    run = epochal.open_run(logger.version, dir=run_root)
    lightning = csv_points(reference, epoch="fit-epoch")  # Lightning prefixes its epoch key too
    assert set(lightning) == {"fit-train_loss_step", "fit-train_loss_epoch", "fit-val_loss"}
    assert {k for r in run.records() for k in r} - {"step", "time", "epoch"} == {
        "fit/train/loss", "fit/train/loss_epoch", "fit/val/loss"}
    assert run.metadata["name_map"]["fit/train/loss"] == "fit-train_loss_step"
    assert stored_points(run, "fit/val/loss") == lightning["fit-val_loss"]


def test_numpy_bool_hyperparameter_is_stored_as_true(run_root):
    import numpy as np

    logger = EpochalLogger(project="hp")
    logger.log_hyperparams({"shuffle": np.bool_(True), "drop": np.bool_(False)})
    logger.finalize("success")
    config = json.loads((Path(logger.log_dir) / "config.json").read_text())
    assert config["shuffle"] is True and config["drop"] is False


def test_hyperparameters_from_namespace_and_dataclass_are_plain_and_redacted(run_root):
    @dataclasses.dataclass
    class Optim:
        name: str = "adam"
        betas: tuple = (0.9, 0.99)

    logger = EpochalLogger(project="hp")
    logger.log_hyperparams(Namespace(lr=0.1, optim=Optim(), data=Namespace(path="/data", api_token="s3cr3t-value")))
    logger.log_metrics({"loss": 1.5, "epoch": 3}, step=7)
    logger.finalize("success")
    run = epochal.open_run(logger.version, dir=run_root)
    assert run.config == {"lr": 0.1, "optim": {"name": "adam", "betas": [0.9, 0.99]},
                          "data": {"path": "/data", "api_token": "***"}}
    assert run.records() and run.records()[0]["step"] == 7 and run.records()[0]["epoch"] == 3
    assert run.records()[0]["train/loss"] == 1.5
    with pytest.raises(ValueError):
        EpochalLogger(checkpoints="sometimes")
    with pytest.raises(TypeError, match="checkpoints="):
        EpochalLogger(log_model=True)
    with pytest.raises(TypeError, match="unexpected"):
        EpochalLogger(project="hp", colour="blue")


def test_a_run_that_cannot_be_stored_does_not_stop_training(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    logger = EpochalLogger(project="lit", dir=blocker)
    fit = trainer(logger, enable_checkpointing=False)
    fit.fit(Tiny(), loader(), loader())
    assert fit.global_step == 2 * BATCHES and logger.experiment.disabled
    assert "lightning: open failed" in caplog.text


def test_exception_in_training_step_marks_the_run_failed(run_root):
    logger = EpochalLogger(project="lit")
    with pytest.raises(RuntimeError, match="boom"):
        trainer(logger).fit(Tiny(fail_at=2), loader(), loader())
    run = epochal.open_run(logger.version, dir=run_root)
    assert run.status == "failed"
    assert "boom in training_step" in run.metadata["error"]
    assert [s for s, _ in stored_points(run, "train/loss")] == [0, 1]


def test_keyboard_interrupt_marks_the_run_failed(run_root):
    logger = EpochalLogger(project="lit")
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into a graceful shutdown and exit(1)
            trainer(logger).fit(Tiny(interrupt_at=1), loader(), loader())
    finally:
        signal.signal(signal.SIGINT, previous)
    run = epochal.open_run(logger.version, dir=run_root)
    assert run.status == "failed" and "KeyboardInterrupt" in run.metadata["error"]


@pytest.mark.parametrize("how", ["logger only", "autolog"])
def test_resume_from_checkpoint_continues_the_same_run(run_root, how):
    first = EpochalLogger(project="resume")
    trainer(first, epochs=1, callbacks=[ModelCheckpoint(save_last=True)]).fit(Tiny(), loader(), loader())
    last = Path(first.log_dir) / "checkpoints" / "last.ckpt"
    assert last.is_file()

    if how == "autolog":  # the autolog'd Trainer carries the logger's callback from the start
        integration.autolog(project="resume")
        try:
            again = Trainer(max_epochs=2, accelerator="cpu", devices=1, limit_train_batches=BATCHES,
                            limit_val_batches=2, log_every_n_steps=1, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, logger=False,
                            callbacks=[ModelCheckpoint(save_last=True)])
        finally:
            integration.autolog(disable=True)
        second = next(lg for lg in again.loggers if isinstance(lg, EpochalLogger))
    else:
        second = EpochalLogger(project="resume")
        again = trainer(second, epochs=2, callbacks=[ModelCheckpoint(save_last=True)])
    again.fit(Tiny(), loader(), loader(), ckpt_path=str(last))

    assert second.version == first.version
    assert [p.name for p in (run_root / "resume").iterdir()] == [first.version]  # no stray empty run
    run = epochal.open_run(first.version, dir=run_root)
    assert run.status == "finished" and run.metadata["resumed"] == 1
    steps = [s for s, _ in stored_points(run, "train/loss")]
    assert steps == list(range(2 * BATCHES)) and again.global_step == 2 * BATCHES
    assert {e for _, e in stored_points(run, "val/loss")} == {0, 1}
    # ModelCheckpoint kept writing into the resumed run's folder
    assert Path(again.checkpoint_callback.dirpath) == run.dir / "checkpoints"
    assert torch.load(last, weights_only=False)["epochal"]["id"] == first.version
    assert torch.load(last, weights_only=False)["global_step"] == 2 * BATCHES


def test_autolog_adds_one_logger_and_disable_restores_trainer_init(run_root):
    original = Trainer.__dict__["__init__"]
    integration.autolog(project="auto")
    try:
        plain = Trainer(logger=False, enable_progress_bar=False)
        mine = EpochalLogger(project="mine")
        given = Trainer(logger=mine, enable_progress_bar=False)
        with pytest.raises(ValueError):
            integration.autolog(checkpoints="sometimes")
        enabled_then = epochal.integrations.enabled()
    finally:
        integration.autolog(disable=True)
    assert [type(lg) for lg in plain.loggers] == [EpochalLogger] and plain.loggers[0].name == "auto"
    assert "lightning" in enabled_then
    assert given.loggers == [mine] and mine.callback in given.callbacks
    assert Trainer.__dict__["__init__"] is original and "lightning" not in epochal.integrations.enabled()
    assert not any(isinstance(lg, EpochalLogger) for lg in Trainer(enable_progress_bar=False).loggers)


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_lightning import Tiny, loader, trainer
from epochal.integrations.lightning import EpochalLogger

logger = EpochalLogger(project="ddp")
fit = trainer(logger, strategy="ddp", devices=2)
fit.fit(Tiny(), loader(), loader())
if fit.global_rank == 0:
    print("RUN", logger.version, fit.global_step, flush=True)
"""


def run_script(source: str, run_root: Path, tmp_path: Path) -> list[str]:
    """Run a training script (this folder importable) in a fresh interpreter; its ``RUN ...`` line, split."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source.format(tests=str(Path(__file__).parent))))
    env = {**os.environ, "EPOCHAL_DIR": str(run_root), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return next(x for x in done.stdout.splitlines() if x.startswith("RUN ")).split()[1:]


def test_ddp_two_processes_make_one_run_with_hardware_from_both_ranks(run_root, tmp_path):
    run_id, global_step = run_script(DDP_SCRIPT, run_root, tmp_path)

    runs = list((run_root / "ddp").iterdir())
    assert [p.name for p in runs] == [run_id]
    run = epochal.open_run(run_id, dir=run_root)
    assert run.status == "finished" and run.metadata["world_size"] == 2
    points = [(r["step"], k) for r in run.records() for k in r if k not in ("step", "time", "epoch")]
    assert points and len(points) == len(set(points))  # every point once, not once per rank
    assert [s for s, _ in stored_points(run, "train/loss")] == list(range(int(global_step)))
    for rank in (0, 1):
        samples = [json.loads(x) for x in (run.dir / f"system.rank{rank}.jsonl").read_text().splitlines()]
        assert samples and {s["rank"] for s in samples} == {rank}


SPAWN_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_lightning import Tiny, loader, trainer
from epochal.integrations.lightning import EpochalLogger

if __name__ == "__main__":
    logger = EpochalLogger(project="spawn")
    logger.log_hyperparams({{"batch_size": 8}})  # the parent opens the run before the spawn
    fit = trainer(logger, strategy="ddp_spawn", devices=2)
    fit.fit(Tiny(), loader(), loader())
    print("RUN", logger.version, flush=True)
"""


def test_ddp_spawn_after_parent_side_hparams_keeps_the_runs_bookkeeping(run_root, tmp_path):
    (run_id,) = run_script(SPAWN_SCRIPT, run_root, tmp_path)
    assert [p.name for p in (run_root / "spawn").iterdir()] == [run_id]
    meta = json.loads((run_root / "spawn" / run_id / "run.json").read_text())
    # the parent's stale handle neither finished the run nor overwrote what the spawned rank 0 wrote
    assert meta["status"] == "finished" and meta["last_step"] == 2 * BATCHES - 1
    assert meta["name_map"]["train/loss"] == "train_loss_step"
    assert set(meta["metric_names"]) == {"train/loss", "train/loss_epoch", "val/loss"}
    run = epochal.open_run(run_id, dir=run_root)
    assert run.config["batch_size"] == 8 and run.config["model"]["class"] == "Tiny"
    assert [s for s, _ in stored_points(run, "train/loss")] == list(range(2 * BATCHES))
    again = epochal.init(project="spawn", id=run_id, resume="must", system_interval=0)
    assert again.step == 2 * BATCHES  # a later resume continues after the last step
    again.finish()


def test_an_unpickled_logger_continues_the_same_run_without_a_second_handle(run_root):
    import pickle

    logger = EpochalLogger(project="pickled")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"train_loss": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"train_loss": 0.5}, step=1)
    logger.log_metrics({"train_loss": 0.25}, step=2)  # the original takes the copy's open handle over
    assert logger.experiment is copy.experiment
    copy.finalize("success")
    logger.finalize("success")
    meta = json.loads((Path(logger.log_dir) / "run.json").read_text())
    assert meta["status"] == "finished" and meta["last_step"] == 2 and meta["metric_names"] == ["train/loss"]
    assert [r["train/loss"] for r in epochal.open_run(logger.version, dir=run_root).records()] == [1.0, 0.5, 0.25]


def test_a_stored_checkpoint_keeps_its_bytes_when_a_resumed_fit_rewrites_the_file(run_root):
    """Stored as a hardlink at the end of the fit (no second copy); Lightning writes checkpoints to a new
    file and renames it over the old name, so the stored inode is never rewritten."""
    first = EpochalLogger(project="keep")
    trainer(first, epochs=1, callbacks=[ModelCheckpoint(save_top_k=0, save_last=True)]).fit(Tiny(), loader(), loader())
    last = Path(first.log_dir) / "checkpoints" / "last.ckpt"
    (version,) = epochal.open_run(first.version, dir=run_root).artifacts()
    stored = epochal.open_run(first.version, dir=run_root).path("model", version.version)
    assert version.metadata["filename"] == "last.ckpt" and os.stat(stored).st_ino == os.stat(last).st_ino  # no copy

    second = EpochalLogger(project="keep")
    trainer(second, epochs=2, callbacks=[ModelCheckpoint(save_top_k=0, save_last=True)]).fit(
        Tiny(), loader(), loader(), ckpt_path=str(last))
    assert torch.load(last, weights_only=False)["global_step"] == 2 * BATCHES
    assert torch.load(stored, weights_only=False)["global_step"] == BATCHES  # the first fit's version is intact
