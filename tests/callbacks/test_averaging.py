"""callbacks=ema and callbacks=swa: the checkpoints hold the averaged weights, and the test stage
of train.py and anything that loads a checkpoint afterwards use those."""

from __future__ import annotations

from typing import ClassVar

import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from bincount.reports.evaluate import load
from bincount.training.runner import train


class WeightsAtTest(pl.Callback):
    """Records the module's weights when the test stage starts."""

    seen: ClassVar[dict] = {}

    def on_test_start(self, trainer, pl_module):
        WeightsAtTest.seen = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_ema_checkpoint_holds_the_averaged_weights(make_cfg, tiny_source):
    cfg = make_cfg(
        "experiment=smoke",
        "debug=limit",
        "callbacks=ema",
        f"data.source={tiny_source}",
        "data.image_size=64",
        "data.num_workers=0",
        "batch_size=4",  # a few optimizer steps per epoch, so the average moves
    )
    assert "model_checkpoint" in cfg.callbacks  # the default callbacks are kept
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": f"{__name__}.WeightsAtTest"}
    train(cfg)
    path = f"{cfg.paths.output_dir}/checkpoints/best.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == current.keys()
    changed = [k for k in averaged if not torch.equal(averaged[k], current[k])]
    assert any("classifier" in k for k in changed), changed[:5]
    for name, value in WeightsAtTest.seen.items():  # train.py tested the averaged weights
        assert torch.equal(value, averaged[name]), name
    module = load(path)  # so do evaluate, serve and export
    for name, value in module.state_dict().items():
        assert torch.equal(value, averaged[name]), name


class Saved(pl.Callback):
    """Records, per checkpoint written, its epoch and whether it holds an average."""

    seen: ClassVar[list] = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        Saved.seen.append((checkpoint["epoch"], "current_model_state" in checkpoint))


def test_swa_averages_the_second_half_and_last_keeps_that_average(make_cfg, tiny_source):
    cfg = make_cfg(
        "experiment=smoke",
        "debug=limit",  # 2 epochs: callbacks.swa.start=0.5 averages from epoch 1 on
        "callbacks=[swa,last]",
        f"data.source={tiny_source}",
        "data.image_size=64",
        "data.num_workers=0",
        "batch_size=4",
    )
    Saved.seen = []
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": f"{__name__}.WeightsAtTest"}
        cfg.callbacks.saved = {"_target_": f"{__name__}.Saved"}
    train(cfg)
    # epoch 0: nothing averaged yet, the raw weights are saved; epoch 1: the average
    assert sorted(set(Saved.seen)) == [(0, False), (1, True)]
    path = f"{cfg.paths.output_dir}/checkpoints/best.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1  # callbacks=last: the last epoch, whatever val/acc said
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(averaged[k], current[k]) for k in averaged if "classifier" in k)
    for name, value in WeightsAtTest.seen.items():  # the test stage used the average
        assert torch.equal(value, averaged[name]), name
