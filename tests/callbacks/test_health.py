"""Each health rule provoked for real by a small training, and a healthy one that fires none."""

from __future__ import annotations

import csv
import json

import pytest
from torch import nn

from bincount.callbacks.health import TrainingHealth
from bincount.errors import BincountError


def health(tmp_path, **rules) -> TrainingHealth:
    return TrainingHealth(dirpath=str(tmp_path), rules=rules)


def verdict(tmp_path) -> dict:
    return json.loads((tmp_path / "health.json").read_text())


def test_healthy_small_training_fires_no_rule(fit, small_cnn, tmp_path):
    cb = health(tmp_path)
    fit(small_cnn(), [cb], epochs=4, lr=3e-3)
    v = verdict(tmp_path)
    assert v["fired"] == [], {k: r.get("fired") for k, r in v["rules"].items()}
    assert v["status"] == "healthy"
    for name in ("non_finite", "exploding_gradients", "vanishing_gradients", "poor_initialization"):
        assert v["rules"][name]["status"] == "ok", name
    # 12 steps, 4 epochs: too short to judge the loss trend or 5 epochs of patience
    assert v["rules"]["loss_not_decreasing"]["status"] == "too_short"
    assert v["rules"]["overtraining"]["status"] == "too_short"


def test_learning_rate_of_10_explodes_and_the_loss_does_not_decrease(fit, small_cnn, tmp_path):
    cb = health(tmp_path, loss_not_decreasing={"window": 3, "patience": 2})
    fit(small_cnn(), [cb], epochs=4, lr=10.0, optimizer="adam", batch_size=4)
    v = verdict(tmp_path)
    assert {"exploding_gradients", "loss_not_decreasing"} <= set(v["fired"]), v["rules"]
    exploding = v["rules"]["exploding_gradients"]["fired"]
    assert exploding["evidence"]["total_norm"] > 1000
    assert exploding["step"] < v["rules"]["loss_not_decreasing"]["fired"]["step"]


def test_sgd_with_learning_rate_10_ends_in_nan_and_stops(fit, small_cnn, tmp_path):
    cb = health(tmp_path)
    trainer = fit(small_cnn(), [cb], epochs=4, lr=10.0, optimizer="sgd", batch_size=4)
    v = verdict(tmp_path)
    assert v["fired"][0] == "exploding_gradients"  # the warning came before the NaN
    assert v["stopped_by"] == "non_finite"
    assert trainer.global_step < 24


def test_deep_sigmoid_network_has_vanishing_gradients(fit, deep_sigmoid_mlp, tmp_path):
    cb = health(tmp_path)
    fit(deep_sigmoid_mlp(depth=20), [cb], epochs=2, lr=1e-3)
    v = verdict(tmp_path)
    assert "vanishing_gradients" in v["fired"]
    found = v["rules"]["vanishing_gradients"]["fired"]
    assert found["evidence"]["ratio"] < 1e-5
    assert "net.1" in found["evidence"]["first_layers"]  # the input-side Linear


def test_all_zero_initialisation_is_poor(fit, small_cnn, tmp_path):
    net = small_cnn()
    for p in net.parameters():
        nn.init.zeros_(p)
    cb = health(tmp_path)
    fit(net, [cb], epochs=1)
    found = verdict(tmp_path)["rules"]["poor_initialization"]
    assert found["status"] == "fired"
    assert found["fired"]["step"] == 1  # judged on the first batch
    assert "net.0" in found["fired"]["evidence"]["constant_weight_layers"]


def test_tiny_training_set_for_many_epochs_overfits_and_overtrains(fit, small_cnn, tmp_path):
    cb = health(tmp_path)
    fit(small_cnn(), [cb], epochs=15, lr=3e-3, n_train=6, batch_size=6)
    v = verdict(tmp_path)
    assert {"overfitting", "overtraining"} <= set(v["fired"]), v["rules"]
    ev = v["rules"]["overfitting"]["fired"]["evidence"]
    best = ev["best_epoch"]
    assert ev["val_loss"][-1] > ev["val_loss"][best]
    assert ev["train_loss"][-1] < ev["train_loss"][best]


def test_dead_relus_are_found(fit, small_cnn, tmp_path):
    net = small_cnn()
    nn.init.constant_(net[7].bias, -100.0)  # the hidden Linear's units never switch on
    cb = health(tmp_path, dead_relu={"every_n_steps": 1})
    fit(net, [cb], epochs=2)
    found = verdict(tmp_path)["rules"]["dead_relu"]
    assert found["status"] == "fired"
    assert found["fired"]["evidence"]["layers"]["net.8"] == 1.0


def test_nan_in_the_data_stops_the_training(fit, small_cnn, bin_tensors, tmp_path):
    x, y = bin_tensors["train"]
    x = x.clone()
    x[5, 0, 0, 0] = float("nan")  # one corrupt pixel in one image of the first epoch
    cb = health(tmp_path)
    trainer = fit(small_cnn(), [cb], epochs=3, train_data=(x, y), batch_size=4)
    v = verdict(tmp_path)
    assert v["stopped_by"] == "non_finite"
    step = v["rules"]["non_finite"]["fired"]["step"]
    assert step <= 6  # 24 images in batches of 4: the bad one is in the first epoch
    assert trainer.global_step == step  # stopped right after the bad batch, not 18 steps


def test_grad_norms_csv_has_one_row_per_step_and_a_column_per_layer(fit, small_cnn, tmp_path):
    fit(small_cnn(), [health(tmp_path)], epochs=1)
    rows = list(csv.DictReader((tmp_path / "grad_norms.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert {"net.0", "net.3", "net.7", "net.9"} <= set(rows[0])
    assert all(float(r["total_norm"]) > 0 for r in rows)


def test_unknown_rules_and_options_are_named():
    with pytest.raises(BincountError, match=r"unknown health rule.*overfit"):
        TrainingHealth(rules={"overfit": {}})
    with pytest.raises(BincountError, match=r"no option.*pateince.*patience"):
        TrainingHealth(rules={"overtraining": {"pateince": 3}})


def test_a_rule_that_raises_is_disabled_not_fatal(fit, small_cnn, tmp_path, caplog):
    cb = health(tmp_path)
    broken = cb.rules[1]
    broken.check = lambda h: 1 / 0
    fit(small_cnn(), [cb], epochs=1)
    assert verdict(tmp_path)["rules"][broken.name]["status"] == "disabled"
    assert "failed (division by zero)" in caplog.text
