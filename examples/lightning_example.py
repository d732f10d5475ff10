"""PyTorch Lightning with epochal: a tiny regressor tracked by ``EpochalLogger``.

    python examples/lightning_example.py [--dir ./epochal-runs] [--epochs 3]

Synthetic data, CPU, a few seconds. Metrics at Lightning's steps, hyperparameters and model
facts in the config, every ModelCheckpoint save as a version of the ``model`` artifact, then a
test pass into the same run. Prints where the run went and what it holds.
"""

from __future__ import annotations

import os
import argparse

import epochal
import torch
from epochal.integrations.lightning import EpochalLogger
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset, random_split


class Regressor(LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()  # -> the run's config
        self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, index):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True)  # -> train/loss, train/loss_epoch
        return loss

    def validation_step(self, batch, index):
        self.log("val_loss", self._loss(batch))  # -> val/loss

    def test_step(self, batch, index):
        self.log("test_loss", self._loss(batch))  # -> test/loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="run root (default: $EPOCHAL_DIR or ./epochal-runs)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)  # the same weights and batch order every time: the run is reproducible

    x = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, (x[:, :3].sum(1) - x[:, 3]).unsqueeze(1))
    train, val, test = random_split(data, [768, 128, 128], generator=torch.Generator().manual_seed(0))

    logger = EpochalLogger(project=os.environ.get("EPOCHAL_PROJECT", "lightning-example"), name="tiny-regressor", dir=args.dir,
                           checkpoints="all")
    trainer = Trainer(
        max_epochs=args.epochs, logger=logger, accelerator="cpu", devices=1, log_every_n_steps=4,
        callbacks=[ModelCheckpoint(monitor="val_loss", save_top_k=1)],  # saves into <run dir>/checkpoints
        enable_progress_bar=False, enable_model_summary=False,
    )
    model = Regressor()
    trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=64))
    trainer.test(model, DataLoader(test, batch_size=64))  # reopens the same run for test/*

    run = epochal.open_run(logger.version, dir=logger.save_dir)
    history = run.records()
    print(f"\nrun {run.id} ({run.status}) stored in {run.dir}")
    print(f"  {len(history)} metric records, last step {max(r['step'] for r in history)}; "
          f"config: {run.config}")
    print("  summary:", {k: round(v, 4) for k, v in run.summary.items() if isinstance(v, float)})
    for version in run.artifacts():
        print(f"  artifact {version.name}:{version.version} {list(version.aliases)} "
              f"score={version.metadata.get('score'):.4f} -> {version.path}")
    print(f"  best checkpoint: {run.path('model', 'best')}")
    print(f"\nresume it:  trainer.fit(model, ckpt_path='{run.dir / 'checkpoints'}/<file>.ckpt')")


if __name__ == "__main__":
    main()
