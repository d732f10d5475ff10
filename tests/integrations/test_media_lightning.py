"""EpochalLogger.log_image / log_text with WandbLogger's signatures, called from a real Lightning fit."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

import epochal
from epochal.integrations.lightning import EpochalLogger


class Painter(LightningModule):
    """Regresses a 3x8x8 image; logs its prediction and a table after every validation."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 3 * 8 * 8)
        self.seen: list[tuple[int, np.ndarray]] = []

    def training_step(self, batch, index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def on_validation_epoch_end(self):
        image = self.net(torch.ones(1, 4)).sigmoid().reshape(3, 8, 8)  # CHW float in [0, 1], needs grad
        expected = (image.detach().permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        self.seen.append((self.logger.experiment.step - 1, expected))
        self.logger.log_image(key="val/prediction", images=[image, image.detach().numpy()],
                              caption=[f"epoch {self.current_epoch}", None])
        self.logger.log_text(key="val/table", columns=["epoch", "loss"],
                             data=[[self.current_epoch, round(float(self.trainer.callback_metrics["val_loss"]), 3)]],
                             step=self.global_step)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.rand(32, 3 * 8 * 8, generator=torch.Generator().manual_seed(1))),
                      batch_size=8)


def test_log_image_and_log_text_during_a_fit(run_root):
    logger = EpochalLogger(project="lt-media", system_interval=0)
    model = Painter()
    Trainer(max_epochs=2, logger=logger, accelerator="cpu", limit_train_batches=3, limit_val_batches=1,
            log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            num_sanity_val_steps=0).fit(model, loader(), loader())
    reader = epochal.open_run(logger.version, dir=run_root)
    images = reader.media("val/prediction")
    assert images["step"].tolist() == [s for s, _ in model.seen for _ in range(2)] == [2, 2, 5, 5]
    assert images["caption"].tolist() == ["epoch 0", None, "epoch 1", None]
    for path, (_, expected) in zip(images["path"][::2], model.seen):
        decoded = np.array(PIL.Image.open(io.BytesIO(open(path, "rb").read())))
        assert np.abs(decoded.astype(int) - expected).max() <= 1  # float -> uint8 rounding
    tables = reader.media("val/table")
    assert tables["step"].tolist() == [3, 6]
    text = open(tables["path"][0]).read()
    assert text.startswith("| epoch | loss |\n|---|---|\n| 0 | ")


def test_bad_arguments_fail_like_wandb_logger(run_root):
    logger = EpochalLogger(project="lt-media", system_interval=0)
    with pytest.raises(TypeError, match='images must be a list'):
        logger.log_image("k", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="caption must be a list of 2 captions"):
        logger.log_image("k", [np.zeros((4, 4))] * 2, caption=["one"])
    with pytest.raises(ValueError, match=r"media 'k': an image must be HW, HWC or CHW"):
        logger.log_image("k", [np.zeros((4, 4, 4, 4))])
    with pytest.raises(TypeError, match="give columns= and data="):
        logger.log_text("t", columns=["a"])
    logger.log_text("t", dataframe=pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), step=3)
    logger.finalize("success")
    reader = epochal.open_run(logger.version, dir=run_root)
    assert reader.media()["key"].tolist() == ["t"]
    assert open(reader.media()["path"][0]).read() == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | y |"
