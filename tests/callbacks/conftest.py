"""Small real trainings for the health and profiling callbacks: real bin images (from the
`tiny_source` fixture, decoded once through the project's transforms at 32 px) and small
networks whose failure modes are about the network, trained by a real Lightning Trainer."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bincount.data.datamodule import BinDataModule

SIZE = 32


class TinyModule(pl.LightningModule):
    """A classifier over bin counts with a plain optimizer; logs like CountModule does."""

    def __init__(self, net: nn.Module, lr: float = 1e-3, optimizer: str = "adam"):
        super().__init__()
        self.net = net
        self.lr = lr
        self.optimizer = optimizer
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.criterion(logits, y), on_epoch=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def small_cnn(classes: int = 5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(16 * 16, 32),
        nn.ReLU(),
        nn.Linear(32, classes),
    )


def deep_sigmoid_mlp(depth: int = 20, width: int = 32, classes: int = 5) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(3 * SIZE * SIZE, width), nn.Sigmoid()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.Sigmoid()]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


@pytest.fixture(autouse=True)
def _seeded():
    """Networks are built before fit() is called: seed their initialisation too."""
    pl.seed_everything(0, workers=True, verbose=False)


@pytest.fixture(name="small_cnn")
def small_cnn_factory():
    return small_cnn


@pytest.fixture(name="deep_sigmoid_mlp")
def deep_sigmoid_mlp_factory():
    return deep_sigmoid_mlp


@pytest.fixture(scope="session")
def bin_tensors(tiny_source, tmp_path_factory) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Real bin images (letterboxed to 32 px, normalised) and their count classes, per split."""
    dm = BinDataModule(
        source=str(tiny_source),
        cache_dir=str(tmp_path_factory.mktemp("data")),
        image_size=SIZE,
        batch_size=64,
        num_workers=0,
        jitter=0.0,
    )
    dm.setup("fit")
    out = {}
    for split, ds in dm.datasets.items():
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
        out[split] = (torch.stack(xs), torch.tensor(ys))
    return out


@pytest.fixture
def fit(bin_tensors, tmp_path):
    """fit(net, callbacks, epochs=.., lr=.., n_train=.., batch_size=..) -> the Trainer."""

    def _fit(
        net,
        callbacks,
        epochs=3,
        lr=1e-3,
        optimizer="adam",
        n_train=None,
        batch_size=8,
        train_data=None,
        num_workers=0,
        profiler=None,
    ):
        pl.seed_everything(0, workers=True)
        x, y = train_data or bin_tensors["train"]
        if n_train:
            x, y = x[:n_train], y[:n_train]
        train = DataLoader(
            TensorDataset(x, y),
            batch_size=batch_size,
            shuffle=True,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )
        val = DataLoader(TensorDataset(*bin_tensors["val"]), batch_size=batch_size)
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            default_root_dir=str(tmp_path),
            profiler=profiler,
        )
        trainer.fit(TinyModule(net, lr=lr, optimizer=optimizer), train, val)
        return trainer

    return _fit
