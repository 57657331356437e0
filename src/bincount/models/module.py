"""The LightningModule: trains a CountNet (a timm backbone with a head over the counts)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from bincount.errors import BincountError
from bincount.models import lr_scaling
from bincount.models.metrics import CountMetrics
from bincount.models.network import AUX_TARGETS, CountNet

log = logging.getLogger(__name__)


def aux_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known (not NaN) standardised targets."""
    known = ~torch.isnan(target)
    if not known.any():
        return pred.sum() * 0.0
    return ((pred[known] - target[known]) ** 2).mean()


class CountModule(pl.LightningModule):
    """Trains a `CountNet` (models/network.py). The net's backbone and head are registered
    here under their own names (`net`, `head`), so a checkpoint's state_dict keys are the
    net's (`net.*`, `head.*`) and inference loads them into a CountNet without Lightning."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        counts: list[int] = (1, 2, 3, 4, 5),
        image_size: int = 224,
        pretrained: bool = True,
        weights: str | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        freeze_backbone: bool = False,
        backbone_lr_mult: float = 1.0,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        head: str = "classify",
        tta: bool | str = False,
        layer_decay: float | None = None,
        aux_weight: float = 0.0,
        resize: str = "letterbox",
        prior: str = "train",
        train_counts: list[int] | None = None,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        if aux_weight < 0:
            raise BincountError(f"model.aux_weight={aux_weight} must be 0 (off) or positive")
        # Auxiliary outputs (training only): what the metadata says of the bin's contents.
        model = CountNet(
            backbone,
            counts,
            image_size,
            pretrained=pretrained,
            weights=weights,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            channels_last=channels_last,
            head=head,
            tta=tta,
            n_aux=len(AUX_TARGETS) if aux_weight else 0,
            resize=resize,
            prior=prior,
            train_counts=train_counts,
        )
        # Not a registered child (its keys would gain a `model.` prefix): its parts are.
        object.__setattr__(self, "network", model)
        self.counts = model.counts
        self.n_aux = model.n_aux
        # A plain list, not Hydra's ListConfig: checkpoints then load with weights_only=True.
        self.hparams["counts"] = self.counts
        self.head = model.head
        self.net = model.net
        # Everything inference needs to preprocess like training; saved in every checkpoint.
        self.hparams["preprocess"] = model.preprocess
        # optimizer.lr_scaling / reference_batch: out of the factory (bincount.models.lr_scaling)
        self.optimizer_factory, self.lr_scaling = lr_scaling.split(optimizer)
        self.scheduler_factory = scheduler
        self.metrics = nn.ModuleDict(
            {stage: CountMetrics(self.counts) for stage in ("val", "test")}
        )
        self.test_confusion: list[list[int]] | None = None
        if freeze_backbone:
            for p in self.backbone_parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.network.train(mode)  # the net's own flag: test-time augmentation is off in training
        return self

    def set_train_counts(self, train_counts: list[int]) -> None:
        """The training split's photos per count: kept in the checkpoint (hyper_parameters),
        divided out of every answer with model.prior=uniform."""
        self.network.set_train_counts(train_counts)
        self.hparams["train_counts"] = self.network.train_counts

    def on_fit_start(self) -> None:
        if self.hparams.get("prior", "train") == "train":
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "class_counts"):
            raise BincountError(
                "model.prior=uniform needs the training split's photos per count: fit with "
                "bincount's data module (data=...), or set model.prior=train"
            )
        self.set_train_counts(datamodule.class_counts("train"))
        photos = self.network.train_counts
        freq = [round(n / max(sum(photos), 1), 3) for n in photos]
        log.info(
            "model.prior=uniform: the training split's count frequencies %s are divided out "
            "of every answer (counts %s)",
            freq,
            self.counts,
        )

    def _sync(self) -> CountNet:
        """The net, following this module's hparams (tta and channels_last may be changed)."""
        self.network.tta = self.hparams.get("tta")
        self.network.channels_last = self.hparams.channels_last
        return self.network

    @property
    def preprocess(self) -> dict:
        return self.hparams["preprocess"]

    def head_parameters(self) -> list[nn.Parameter]:
        return self.network.head_parameters()

    def backbone_parameters(self) -> list[nn.Parameter]:
        return self.network.backbone_parameters()

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw input (the auxiliary outputs, if any, are `aux_outputs`)."""
        return self._sync().raw(x)

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self._sync().outputs(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-count scores whose softmax is the probability of each count (every head)."""
        return self._sync()(x)

    def predict_counts(self, logits: torch.Tensor) -> torch.Tensor:
        return self.network.predict_counts(logits)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        out = self._outputs(x)
        raw = out[:, : self.head.n_outputs]
        loss = self.head.loss(raw, y, self.hparams.label_smoothing)
        if self.n_aux:
            if len(batch) < 3:
                raise BincountError(
                    "model.aux_weight > 0 needs the metadata's targets in each batch: "
                    "train with data.aux=true (train.py sets it from model.aux_weight)"
                )
            aux = aux_loss(out[:, self.head.n_outputs :], batch[2])
            self.log("train/aux_loss", aux, on_step=False, on_epoch=True)
            loss = loss + self.hparams.aux_weight * aux
        acc = (self.head(raw).argmax(1) == y).float().mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _eval_step(self, stage: str, batch) -> None:
        x, y = batch[0], batch[1]
        # Validation sees each image once (TTA would multiply the cost of every epoch, and
        # checkpoint selection needs no more); test and inference average the views.
        logits = self.network.scores(self.raw(x)) if stage == "val" else self(x)
        # The same loss for every head: the negative log-likelihood of the true count.
        loss = nn.functional.cross_entropy(logits.float(), y)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True)
        self.metrics[stage].update(logits.argmax(1), y)

    def _eval_end(self, stage: str) -> None:
        metrics = self.metrics[stage]
        if self.trainer.sanity_checking:
            metrics.reset()
            return
        values = metrics.compute()
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("acc", "macro_acc"))
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
        base_lr = self.optimizer_factory.keywords.get("lr", 1e-3) * self._lr_factor()
        head = [p for p in self.head_parameters() if p.requires_grad]
        groups = [{"name": "head", "params": head, "lr": base_lr}]
        body_lr = base_lr * self.hparams.backbone_lr_mult
        if self.hparams.get("layer_decay"):
            groups += self._layer_decay_groups(body_lr)
        else:
            body = [p for p in self.backbone_parameters() if p.requires_grad]
            if body:
                groups.append({"name": "backbone", "params": body, "lr": body_lr})
        optimizer = self.optimizer_factory(groups)
        if not callable(self.scheduler_factory):  # scheduler=none
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=max(total, 1))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _lr_factor(self) -> float:
        """optimizer.lr_scaling's multiplier for this run's processes and per-process batch."""
        if self.lr_scaling.mode == "none" or self._trainer is None:
            return 1.0
        datamodule = getattr(self.trainer, "datamodule", None)
        batch = int(getattr(datamodule, "batch_size", 0) or 0)
        if batch < 1:
            return 1.0
        processes = int(self.trainer.world_size)
        factor = self.lr_scaling.factor(batch, processes)
        log.info(
            "lr x %.3f (optimizer.lr_scaling=%s): effective batch %d = %d per process x %d",
            factor,
            self.lr_scaling.mode,
            batch * processes,
            batch,
            processes,
        )
        return factor

    def _layer_decay_groups(self, body_lr: float) -> list[dict]:
        """Backbone groups whose lr shrinks by `layer_decay` per block from the top down."""
        from timm.optim._param_groups import param_groups_layer_decay

        decay = float(self.hparams.layer_decay)
        if not 0 < decay <= 1:
            raise BincountError(f"model.layer_decay={decay} must be in (0, 1]: e.g. 0.8")
        head = {id(p) for p in self.head_parameters()}
        weight_decay = self.optimizer_factory.keywords.get("weight_decay", 0.0)
        groups = []
        for i, g in enumerate(
            param_groups_layer_decay(self.net, weight_decay=weight_decay, layer_decay=decay)
        ):
            params = [p for p in g["params"] if p.requires_grad and id(p) not in head]
            if params:
                lr = body_lr * g["lr_scale"]
                groups.append(
                    {
                        "name": f"backbone{i}",
                        "params": params,
                        "lr": lr,
                        "weight_decay": g["weight_decay"],
                    }
                )
        return groups
