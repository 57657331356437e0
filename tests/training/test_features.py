"""Head-only training on cached frozen-backbone features (`experiment=head_sweep`)."""

from __future__ import annotations

import json

import pytest
import torch

from bincount import inference
from bincount.data import transforms
from bincount.data.datamodule import BinDataModule
from bincount.reports.run_report import load_run
from bincount.training import features
from bincount.training.head_only import _logits
from bincount.training.runner import train

SETTINGS = ("experiment=head_sweep", "data.image_size=64", "data.num_workers=0")


@pytest.fixture
def head_run(make_cfg, tiny_source, tmp_path):
    cfg = make_cfg(*SETTINGS, f"data.source={tiny_source}", "trainer.max_epochs=4")
    objective = train(cfg)
    return cfg, objective, json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_head_run_writes_a_normal_run_folder(head_run, tmp_path):
    _, objective, metrics = head_run
    run = tmp_path / "run"
    assert metrics["objective"] == {"name": "val/acc", "value": objective}
    assert 0.0 <= objective <= 1.0 and "test/acc" in metrics["test"]
    assert metrics["head_only"]["features_built"] is True
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    lines = (run / "csv" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step") and len(lines) == 1 + 4  # one row an epoch
    # Lightning's CSVLogger wrote it, with a fit run's names: compare and report read it alike
    assert "train/loss_epoch" in lines[0] and (run / "csv" / "hparams.yaml").is_file()
    assert metrics["last"]["epoch"] == 3 and 0 <= metrics["best_epoch"] <= 3
    assert load_run(run).series["val/acc"] and set(load_run(run).epochs.values()) == {1, 2, 3, 4}


def test_the_checkpoint_is_the_frozen_backbone_and_the_trained_head(head_run, tmp_path):
    cfg, _, metrics = head_run
    module = inference.load_net(tmp_path / "run" / "checkpoints" / "best.ckpt")
    splits = torch.load(metrics["head_only"]["features"], weights_only=True)["splits"]
    test = splits["test"]
    # The cached features are what the checkpoint's backbone computes from the test images...
    dm = BinDataModule(
        cfg.data.source,
        cfg.data.cache_dir,
        image_size=64,
        num_workers=0,
        network=module.data_config,
    )
    dm.setup()
    tf = transforms.build(module.preprocess, train=False)
    ds = dm.datasets["test"]
    x = torch.stack(
        [tf(transforms.open_rgb(ds.folder / "bin-images" / f"{i}.jpg", 64)) for i in ds.ids]
    )
    with torch.inference_mode():
        assert torch.allclose(features.pooled(module.net, x), test["x"], atol=1e-4)
        # ...and the checkpoint's head scores them as the run's test metrics say.
        full = module(x)
    assert torch.allclose(full, _logits(module, test["x"]), atol=1e-4)
    acc = (full.argmax(1) == test["y"]).float().mean().item()
    assert acc == pytest.approx(metrics["test"]["test/acc"], abs=1e-6)


def test_a_second_trial_reuses_the_features(head_run, make_cfg, tiny_source, tmp_path):
    _, _, first = head_run
    cfg = make_cfg(*SETTINGS, f"data.source={tiny_source}", "lr=0.01", "batch_size=8")
    train(cfg)
    second = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert second["head_only"]["features_built"] is False
    assert second["head_only"]["features"] == first["head_only"]["features"]
    # Another image size is another backbone output: a new cache file.
    cfg = make_cfg(*SETTINGS[:1], f"data.source={tiny_source}", "data.image_size=32")
    cfg.data.num_workers = 0
    train(cfg)
    third = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert third["head_only"]["features_built"] is True
    assert third["head_only"]["features"] != first["head_only"]["features"]
