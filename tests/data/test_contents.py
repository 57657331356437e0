"""Auxiliary targets from the metadata: the figures, the batches that carry them, and the loss
they add in training (through train.py, on real images)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from runner import run_train

from bincount.data import contents
from bincount.data.datamodule import BinDataModule
from bincount.models.module import CountModule, aux_loss
from bincount.models.network import CountNet
from bincount.preprocess import AUX_TARGETS


def test_figures_of_a_real_metadata_file(abid):
    first = sorted((abid / "metadata").iterdir())[0]
    meta = json.loads(first.read_text())
    items = meta["BIN_FCSKU_DATA"].values()
    volume = sum(
        i["quantity"] * i["length"]["value"] * i["width"]["value"] * i["height"]["value"]
        for i in items
    )
    weight = sum(i["quantity"] * i["weight"]["value"] for i in items)
    got = contents.figures(meta)
    assert got == pytest.approx([math.log1p(volume), math.log1p(weight), len(items)])
    assert tuple(contents.NAMES) == AUX_TARGETS


def test_what_the_metadata_cannot_say_is_nan():
    item = {"quantity": 2, "length": {"value": 2.0}, "width": {"value": 1.0}}  # no height, weight
    volume, weight, distinct = contents.figures({"BIN_FCSKU_DATA": {"A": item}})
    assert math.isnan(volume) and math.isnan(weight) and distinct == 1.0
    assert all(math.isnan(v) for v in contents.figures({}))


def test_batches_carry_standardised_targets_only_when_asked(tiny_source, tmp_path):
    def dm(aux):
        d = BinDataModule(
            str(tiny_source),
            str(tmp_path / "d"),
            batch_size=4,
            num_workers=0,
            network={"aux_targets": AUX_TARGETS if aux else ()},
        )
        d.prepare_data()
        d.setup()
        return d

    plain, with_aux = dm(False), dm(True)
    assert len(next(iter(plain.val_dataloader()))) == 2
    x, _, aux = next(iter(with_aux.val_dataloader()))
    assert aux.shape == (x.shape[0], 3)
    train = with_aux.datasets["train"].aux
    assert torch.allclose(train.nanmean(0), torch.zeros(3), atol=1e-5)
    # more objects, more volume: the count and the standardised volume go together
    y_all = torch.tensor(with_aux.datasets["train"].targets, dtype=torch.float32)
    known = ~torch.isnan(train[:, 0])
    assert torch.corrcoef(torch.stack([y_all[known], train[known, 0]]))[0, 1] > 0.2


def test_aux_loss_ignores_unknown_targets():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[1.0, float("nan")], [float("nan"), float("nan")]])
    assert aux_loss(pred, target).item() == 0.0
    target2 = torch.tensor([[3.0, float("nan")], [float("nan"), 1.0]])
    loss = aux_loss(pred, target2)
    assert loss.item() == pytest.approx((4.0 + 1.0) / 2)
    loss.backward()
    assert pred.grad[0, 1] == 0 and pred.grad[1, 0] == 0


def test_the_aux_outputs_never_reach_the_count_scores():
    net = CountNet(pretrained=False, head="ordinal", aux=True, channels_last=False)
    m = CountModule(net, aux_weight=0.5)
    m.eval()
    assert m.net.net.get_classifier().out_features == 1 + 3
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


@pytest.mark.long
def test_training_with_the_aux_head_logs_its_loss(tiny_source, tmp_path):
    proc = run_train(
        "experiment=smoke",
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "data.image_size=64",
        "data.num_workers=0",
        "model.net.aux=true",
        "model.aux_weight=0.5",
        "trainer.max_epochs=2",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        aux = [float(r["train/aux_loss"]) for r in csv.DictReader(f) if r.get("train/aux_loss")]
    assert len(aux) == 2 and all(v > 0 for v in aux)
    assert (tmp_path / "run" / "metrics.json").is_file()
