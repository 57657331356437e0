"""The LightningModule: trains a CountNet (a timm backbone with a head over the counts)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from bincount.errors import BincountError
from bincount.models import backbones, lr_scaling
from bincount.models.metrics import CountMetrics
from bincount.models.network import CountNet

log = logging.getLogger(__name__)


def aux_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known (not NaN) standardised targets."""
    known = ~torch.isnan(target)
    if not known.any():
        return pred.sum() * 0.0
    return ((pred[known] - target[known]) ** 2).mean()


def _state_dict_as_the_net(module, state_dict, prefix, local_metadata) -> None:
    """`net.net.*` -> `net.*`, `net.head.*` -> `head.*`: a CountModule's state_dict keys are its
    CountNet's, as they always were (inference loads them into a CountNet without Lightning)."""
    own = prefix + "net."
    for key in [k for k in state_dict if k.startswith(own)]:
        state_dict[prefix + key[len(own) :]] = state_dict.pop(key)


def _load_state_dict_of_the_net(module, state_dict, prefix, *args) -> None:
    """The other way round: a checkpoint's `net.*` and `head.*` go to the CountNet (`net`)."""
    for key in [k for k in state_dict if k.startswith((prefix + "net.", prefix + "head."))]:
        state_dict[prefix + "net." + key[len(prefix) :]] = state_dict.pop(key)


class CountModule(pl.LightningModule):
    """Trains a `CountNet` (models/network.py, built from the config's `model.net` node): the
    loss, the metrics and the optimiser's settings are this module's arguments, the network's
    are the net's. The checkpoint's state_dict keys are the net's own (`net.*`, `head.*`: a key
    mapping both ways, `_state_dict_as_the_net`), and its hyper_parameters hold the net's record
    (`net`) and the preprocessing (`preprocess`): inference builds the CountNet from them
    without Lightning (`CountNet.from_checkpoint`)."""

    def __init__(
        self,
        net: CountNet,
        freeze_backbone: bool = False,
        frozen_stages: int = 0,
        backbone_lr_mult: float = 1.0,
        label_smoothing: float = 0.0,
        layer_decay: float | None = None,
        aux_weight: float = 0.0,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        if aux_weight and not net.n_aux:
            raise BincountError(
                f"model.aux_weight={aux_weight} weighs the auxiliary outputs, which this network "
                "lacks: set model.net.aux=true as well (or model.aux_weight=0)"
            )
        self.net = net
        self.counts = net.counts
        self.n_aux = net.n_aux
        # What checkpoints keep of the net (a plain dict: they load with weights_only=True).
        self.hparams["net"] = net.config
        self.register_state_dict_post_hook(_state_dict_as_the_net)
        self.register_load_state_dict_pre_hook(_load_state_dict_of_the_net)
        # optimizer.lr_scaling / reference_batch: out of the factory (bincount.models.lr_scaling)
        self.optimizer_factory, self.lr_scaling = lr_scaling.split(optimizer)
        self.scheduler_factory = scheduler
        self.metrics = nn.ModuleDict(
            {stage: CountMetrics(self.counts) for stage in ("val", "test")}
        )
        self.test_confusion: list[list[int]] | None = None
        self._class_counts: Callable[[str], list[int]] | None = None
        if freeze_backbone:
            for p in self.backbone_parameters():
                p.requires_grad_(False)
        if frozen_stages:
            # the stem and the first stages keep their pretrained weights (their batch-norm
            # statistics still follow the data): no backward pass through them
            for p in backbones.early_parameters(self.net.net, int(frozen_stages)):
                p.requires_grad_(False)

    @property
    def head(self) -> nn.Module:
        return self.net.head

    def use_data(
        self, preprocess: dict, class_counts: Callable[[str], list[int]] | None = None
    ) -> None:
        """What the data module says (its public `preprocess` and `class_counts`): the
        preprocessing, saved in every checkpoint; the training split's photos per count, read
        when fitting starts (after the data's setup) for model.net.prior=uniform."""
        self.net.preprocess = dict(preprocess)
        self.hparams["preprocess"] = self.net.preprocess
        self._class_counts = class_counts

    def set_train_counts(self, train_counts: list[int]) -> None:
        """The training split's photos per count: kept in the checkpoint (the net's record),
        divided out of every answer with model.net.prior=uniform."""
        self.net.set_train_counts(train_counts)

    def on_fit_start(self) -> None:
        if self.net.prior == "train":
            return
        if self._class_counts is None:
            raise BincountError(
                f"model.net.prior={self.net.prior} needs the training split's photos per count: "
                "fit with bincount's data module (data=...), or set model.net.prior=train"
            )
        self.set_train_counts(self._class_counts("train"))
        photos = self.net.train_counts
        freq = [round(n / max(sum(photos), 1), 3) for n in photos]
        log.info(
            "model.net.prior=%s: the training split's count frequencies %s are divided out "
            "of every answer (counts %s)",
            self.net.prior,
            freq,
            self.counts,
        )

    @property
    def preprocess(self) -> dict | None:
        return self.net.preprocess

    def head_parameters(self) -> list[nn.Parameter]:
        return self.net.head_parameters()

    def backbone_parameters(self) -> list[nn.Parameter]:
        return self.net.backbone_parameters()

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw input (the auxiliary outputs, if any, are left out)."""
        return self.net.raw(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-count scores whose softmax is the probability of each count (every head)."""
        return self.net(x)

    def predict_counts(self, logits: torch.Tensor) -> torch.Tensor:
        return self.net.predict_counts(logits)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        out = self.net.outputs(x)
        raw = out[:, : self.head.n_outputs]
        loss = self.head.loss(raw, y, self.hparams.label_smoothing)
        if self.n_aux:
            if len(batch) < 3:
                raise BincountError(
                    "model.aux_weight > 0 needs the metadata's targets in each batch: "
                    "give the data module the net's data_config (BinDataModule(network=...))"
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
        logits = self.net.scores(self.raw(x)) if stage == "val" else self(x)
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

        decay = float(self.hparams.layer_decay)  # in (0, 1]: bincount.validate
        head = {id(p) for p in self.head_parameters()}
        weight_decay = self.optimizer_factory.keywords.get("weight_decay", 0.0)
        groups = []
        for i, g in enumerate(
            param_groups_layer_decay(self.net.net, weight_decay=weight_decay, layer_decay=decay)
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
