"""`debug=health` and `debug=profile` on the real default model (EfficientNet-Lite0, offline
pretrained weights) through train.py: the healthy run fires no rule, and the run folder gets
health.json, grad_norms.csv, profile.json, Lightning's profiler table and report.html."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from bincount.config import project_root


def test_healthy_default_run_fires_no_rule_and_writes_the_report(debug_run):
    health = json.loads((debug_run / "health.json").read_text())
    assert health["fired"] == [], {k: r.get("fired") for k, r in health["rules"].items()}
    for name in ("non_finite", "exploding_gradients", "vanishing_gradients", "poor_initialization"):
        assert health["rules"][name]["status"] == "ok", name
    assert len(health["layers"]) > 50  # every layer of the backbone is watched
    profile = json.loads((debug_run / "profile.json").read_text())
    assert profile["steps"] == health["steps_checked"] == 5  # 10 images in batches of 2
    assert profile["lightning_profiler"]  # Lightning's SimpleProfiler ran underneath
    assert (debug_run / "fit-lightning_profile.txt").is_file()
    page = (debug_run / "report.html").read_text()
    assert "Health rules" in page and "data:image/png;base64," in page


def test_the_findings_are_in_the_log(debug_run):
    log = (debug_run / "train.log").read_text()
    assert "health: no rule fired (5 steps, 1 epochs checked)" in log
    assert "profile: step " in log and "images/s" in log
    assert "health metrics: health/rules_fired=0" in log
    assert "profile metrics: profile/step_seconds=" in log and "profile/data_fraction=" in log
    assert f"report: {debug_run / 'report.html'}" in log


def test_debug_configs_only_add_callbacks_and_the_profiler(make_cfg):
    base = make_cfg()
    for debug, added in (
        ("health", {"health", "run_report"}),
        ("profile", {"profile", "run_report"}),
    ):
        cfg = make_cfg(f"debug={debug}")
        assert set(cfg.callbacks) - set(base.callbacks) == added
        assert set(base.callbacks) <= set(cfg.callbacks)  # checkpoints etc. stay
        trainer = OmegaConf.to_container(cfg.trainer)
        changed = {k for k in trainer if cfg.trainer[k] != base.trainer.get(k)}
        assert changed <= {"profiler"}
        assert cfg.data == base.data and cfg.model == base.model


def test_thresholds_and_stop_are_set_from_the_command_line(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(
        "debug=health",
        "callbacks.health.rules.overtraining.patience=2",
        "callbacks.health.rules.exploding_gradients.stop=true",
        "callbacks.health.rules.dead_relu.enabled=false",
    )
    rules = {r.name: r for r in instantiate(cfg.callbacks.health).rules}
    assert rules["overtraining"].patience == 2
    assert rules["exploding_gradients"].stop is True
    assert rules["dead_relu"].enabled is False
    assert rules["non_finite"].stop is True  # the default


@pytest.mark.slow
def test_health_and_profile_under_ddp_with_two_processes(tiny_source, tmp_path):
    """Two real DDP processes (gloo on CPU): the stop decision is a collective, so no rank may
    hang; only rank 0 writes the findings."""
    run = tmp_path / "run"
    overrides = [
        "debug=[health,profile]",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",  # SyncBatchNorm needs GPUs
        "experiment=smoke",
        f"data.source={tiny_source}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run}",
        "data.image_size=64",
        "data.max_per_split=10",
        "data.num_workers=0",
        "batch_size=2",
        "test=false",
    ]
    train_py = [sys.executable, str(project_root() / "train.py")]
    proc = subprocess.run([*train_py, *overrides], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    health = json.loads((run / "health.json").read_text())
    assert health["fired"] == []
    assert health["steps_checked"] == 2  # 5 images a rank in batches of 2, the last dropped
    assert json.loads((run / "profile.json").read_text())["steps"] == 2
    assert (run / "report.html").is_file()
