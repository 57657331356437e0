"""bincount.callbacks.checkpoint.ModelCheckpoint: last.ckpt follows the end of every epoch, also
when the monitored metric does not improve (Lightning 2.6's own ModelCheckpoint then leaves it at
the last improving epoch, or writes it only at the end of training with `epoch` one past the
last)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from bincount.callbacks.checkpoint import ModelCheckpoint


class Plateau(pl.LightningModule):
    """Trains a linear layer; its `val/acc` is the same every epoch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("val/acc", 0.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)


class Saves(pl.Callback):
    def __init__(self, path):
        self.path, self.epochs = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        if self.path.is_file():
            self.epochs.append(torch.load(self.path, weights_only=False)["epoch"])


def fit(tmp_path, callback, **trainer):
    saves = Saves(tmp_path / "last.ckpt")
    pl.Trainer(
        max_epochs=3,
        callbacks=[callback, saves],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer,
    ).fit(Plateau(), loader(), loader())
    return saves.epochs, torch.load(tmp_path / "last.ckpt", weights_only=False)


def checkpoint(tmp_path, cls=ModelCheckpoint):
    return cls(
        dirpath=tmp_path,
        filename="best",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )


def test_last_ckpt_follows_every_epoch_on_a_plateau(tmp_path):
    epochs, last = fit(tmp_path, checkpoint(tmp_path))
    assert epochs == [0, 1]  # as epochs 1 and 2 start (Lightning's alone: [0, 0])
    assert last["epoch"] == 2 and last["global_step"] == 3 * 2  # Lightning's alone: 0 and 2
    assert torch.load(tmp_path / "best.ckpt", weights_only=False)["epoch"] == 0


def test_last_ckpt_without_validation(tmp_path):
    epochs, last = fit(tmp_path, checkpoint(tmp_path), limit_val_batches=0)
    assert epochs == [0, 1]
    assert last["epoch"] == 2 and last["global_step"] == 3 * 2


def test_the_state_key_is_lightnings(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint as Lightnings

    assert checkpoint(tmp_path).state_key == checkpoint(tmp_path, Lightnings).state_key
