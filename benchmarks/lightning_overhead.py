"""Lightning training overhead: one tiny fit (log every step, 2 epochs) per logger, wall time side by side.

Loggers: none (the baseline), a no-op ``Logger`` (what any logger costs Lightning itself),
``EpochalLogger``, Lightning's ``CSVLogger`` and ``TensorBoardLogger``,
``WandbLogger`` (offline) and ``MLFlowLogger`` (file store). A measurement is the wall time of
making the logger and the Trainer, fitting, and closing the logger (``wandb.finish()`` for wandb,
whose Lightning logger leaves its run open). Fits are interleaved across repeats (the order
rotates every round) and the best of each is kept, so load from other processes shows up as
little as it can; the spread says how much it showed up: each round's fit over the no-op
logger's fit of the same round, as a median and a min..max range. A short untimed fit per
logger first takes each one's one-time costs (imports, first-use caches) out of every round.

    python -m benchmarks.lightning_overhead [--quick] [--repeats=N] [--loggers=none,noop,epochal]

Where epochal's share goes (profiled on a 1000-step fit, 2 shared cores): the per-step call (~10-15 us:
``Run.log_native`` with caches cold from the training step around it), opening the run (~3 ms: plugins,
writer lanes, sampler), the environment capture and first writes on background threads, and at the
end the last system sample and the fsync'd rewrites of run.json and summary.json.

``run()`` returns one row per logger: ``logger``, ``seconds`` (best), ``ratio`` (to no logger),
``overhead_pct``, ``vs_noop_pct`` (best wall time over the no-op logger's best: the target),
``vs_noop_median_pct`` and ``vs_noop_range`` (the same, round by round), ``per_step_us`` (extra
wall time per training step), ``cpu_ratio`` (this process's CPU time, threads included, to no
logger: steadier when the machine is busy; wandb's service process is not counted) and ``steps``.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LOGGERS", "run"]

LOGGERS = ("none", "noop", "epochal", "csv", "tensorboard", "wandb", "mlflow")
QUIET = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true", "WANDB_CONSOLE": "off",
         "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_ALLOW_FILE_STORE": "true", "PYTHONWARNINGS": "ignore",
         "EPOCHAL_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _module_and_data(batches: int):
    import torch
    from lightning.pytorch import LightningModule
    from torch.utils.data import DataLoader, TensorDataset

    class Regressor(LightningModule):
        def __init__(self, width: int = 128, lr: float = 0.01) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                           torch.nn.ReLU(), torch.nn.Linear(width, 1))

        def training_step(self, batch, index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.log("lr", self.hparams.lr)
            return loss

        def validation_step(self, batch, index):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    x = torch.randn(batches * 32, 32, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, x[:, :4].sum(1, keepdim=True))
    return Regressor, DataLoader(data, batch_size=32), DataLoader(data, batch_size=256)


def _make_logger(kind: str, tmp: Path) -> tuple[Any, Callable[[], None]]:
    """(logger or None, what closes it beyond Lightning's own finalize)."""
    def nothing() -> None:
        return None

    if kind == "none":
        return None, nothing
    if kind == "noop":
        return _noop_logger(), nothing
    if kind == "epochal":
        from epochal.integrations.lightning import EpochalLogger

        return EpochalLogger(project="bench", dir=tmp / "epochal"), nothing
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(tmp / "csv"), nothing
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(tmp / "tb"), nothing
    if kind == "wandb":
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(project="bench", save_dir=str(tmp / "wandb"), offline=True), wandb.finish
    if kind == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name="bench", tracking_uri=(tmp / "mlruns").as_uri()), nothing
    raise ValueError(f"unknown logger {kind!r}; choose from {LOGGERS}")


def _noop_logger() -> Any:
    from lightning.pytorch.loggers import Logger

    class NoOp(Logger):
        name, version = "noop", 0

        def log_metrics(self, metrics: Any, step: Any = None) -> None:
            pass

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return NoOp()


def _fit_seconds(kind: str, tmp: Path, batches: int) -> tuple[float, float, int]:
    from lightning.pytorch import Trainer

    module, train, val = _module_and_data(batches)
    model = module()
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    logger, close = _make_logger(kind, tmp)
    trainer = Trainer(
        max_epochs=2, logger=logger if logger is not None else False, accelerator="cpu", devices=1,
        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train, val)
    close()
    return time.perf_counter() - start, time.process_time() - cpu, trainer.global_step


def run(quick: bool = False, repeats: int | None = None, loggers: tuple[str, ...] = LOGGERS) -> list[dict[str, Any]]:
    """Time the fit with each logger; rows as described in the module docstring."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "wandb"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)  # steadier step times on a shared machine
    batches = 60 if quick else 500
    repeats = repeats or (2 if quick else 7)
    tmp = Path(tempfile.mkdtemp(prefix="epochal-lightning-bench-"))
    walls: dict[str, dict[int, float]] = {kind: {} for kind in loggers}  # logger -> round -> seconds
    best_cpu: dict[str, float] = {}
    steps: dict[str, int] = {}
    errors: dict[str, str] = {}
    try:
        _fit_seconds("none", tmp / "warmup", batches)  # imports, first-touch allocations
        for kind in loggers:  # each logger's one-time costs (imports, caches) before any timed round
            try:
                _fit_seconds(kind, tmp / f"warmup-{kind}", 30)
            except Exception as exc:  # a logger that is not installed or cannot start
                errors[kind] = f"unavailable: {type(exc).__name__}: {exc}"[:160]
        for round_ in range(repeats):
            shift = round_ % len(loggers)  # rotate the order so no logger always runs first or last
            for kind in loggers[shift:] + loggers[:shift]:
                if kind in errors:
                    continue
                try:
                    seconds, cpu, steps[kind] = _fit_seconds(kind, tmp / f"{kind}-{round_}", batches)
                except Exception as exc:  # a logger that is not installed or cannot start
                    errors[kind] = f"unavailable: {type(exc).__name__}: {exc}"[:160]
                    continue
                walls[kind][round_] = seconds
                best_cpu[kind] = min(cpu, best_cpu.get(kind, float("inf")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {kind: min(rounds.values()) for kind, rounds in walls.items() if rounds}
    base = best.get("none")
    rows = []
    for kind in loggers:
        if kind in errors or kind not in best:
            rows.append({"logger": kind, "status": errors.get(kind, "not measured")})
            continue
        row: dict[str, Any] = {"logger": kind, "seconds": round(best[kind], 3), "steps": steps[kind]}
        if base:
            row.update(ratio=round(best[kind] / base, 4), overhead_pct=round(100 * (best[kind] / base - 1), 2),
                       per_step_us=round(1e6 * (best[kind] - base) / max(steps[kind], 1), 1),
                       cpu_ratio=round(best_cpu[kind] / best_cpu["none"], 4))
        if "noop" in best:
            row["vs_noop_pct"] = round(100 * (best[kind] / best["noop"] - 1), 2)
            paired = [100 * (s / walls["noop"][r] - 1) for r, s in walls[kind].items() if r in walls["noop"]]
            if paired:
                row.update(vs_noop_median_pct=round(statistics.median(paired), 2),
                           vs_noop_range=f"{min(paired):+.1f}..{max(paired):+.1f}")
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["logger", "seconds", "ratio", "overhead_pct", "vs_noop_pct", "vs_noop_median_pct", "vs_noop_range",
               "per_step_us", "cpu_ratio", "steps", "status"]
    headers = [h for h in headers if any(h in r for r in rows)]
    cells = [[str(r.get(h, "")) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


if __name__ == "__main__":
    chosen = [a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--loggers=")]
    repeats_given = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--repeats=")]
    print(_table(run(quick="--quick" in sys.argv[1:], repeats=repeats_given[0] if repeats_given else None,
                     loggers=tuple(chosen[0]) if chosen else LOGGERS)))
