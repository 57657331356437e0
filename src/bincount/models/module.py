"""The LightningModule: a timm backbone with a head over the counts."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from bincount.models import backbones
from bincount.models.metrics import CountMetrics

log = logging.getLogger(__name__)


class CountModule(pl.LightningModule):
    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        counts: list[int] = (1, 2, 3, 4, 5),
        image_size: int = 224,
        pretrained: bool = True,
        weights: str | None = None,
        drop_rate: float = 0.2,
        freeze_backbone: bool = False,
        backbone_lr_mult: float = 1.0,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.counts = [int(c) for c in counts]
        # A plain list, not Hydra's ListConfig: checkpoints then load with weights_only=True.
        self.hparams["counts"] = self.counts
        self.net = backbones.create_backbone(
            backbone, len(self.counts), pretrained=pretrained, weights=weights, drop_rate=drop_rate
        )
        mean, std = backbones.normalization(self.net)
        # Everything inference needs to preprocess like training; saved in every checkpoint.
        # (data/transforms.py builds the transform from this dict; models never import data)
        self.hparams["preprocess"] = {
            "resize": "letterbox",
            "image_size": int(image_size),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        }
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.metrics = nn.ModuleDict(
            {stage: CountMetrics(self.counts) for stage in ("val", "test")}
        )
        self.test_confusion: list[list[int]] | None = None
        if freeze_backbone:
            for p in self.backbone_parameters():
                p.requires_grad_(False)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    @property
    def preprocess(self) -> dict:
        return self.hparams["preprocess"]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_classifier().parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def predict_counts(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.counts, device=logits.device)[logits.argmax(1)]

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, stage: str, batch) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", self.criterion(logits, y), on_epoch=True, sync_dist=True)
        self.metrics[stage].update(logits.argmax(1), y)

    def _eval_end(self, stage: str) -> None:
        metrics = self.metrics[stage]
        if self.trainer.sanity_checking:
            metrics.reset()
            return
        values = metrics.compute()
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "acc")
        if stage == "test":
            self.test_confusion = metrics.confusion_matrix()
        metrics.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch)

    def on_validation_epoch_end(self):
        self._eval_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch)

    def on_test_epoch_end(self):
        self._eval_end("test")

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("CountModule needs an optimizer factory (optimizer=...)")
        base_lr = self.optimizer_factory.keywords.get("lr", 1e-3)
        head = [p for p in self.head_parameters() if p.requires_grad]
        groups = [{"name": "head", "params": head, "lr": base_lr}]
        body = [p for p in self.backbone_parameters() if p.requires_grad]
        if body:
            groups.append(
                {"name": "backbone", "params": body, "lr": base_lr * self.hparams.backbone_lr_mult}
            )
        optimizer = self.optimizer_factory(groups)
        if not callable(self.scheduler_factory):  # scheduler=none
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=max(total, 1))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
