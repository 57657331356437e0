"""StepProfile on real small trainings: the step split, throughput, memory and CPU figures,
DataLoader workers, Lightning's SimpleProfiler underneath, and the advice from a summary."""

from __future__ import annotations

import json
import os

import pytest
from pytorch_lightning.profilers import SimpleProfiler

from bincount.callbacks.profiling import PHASES, StepProfile, advise


def profile(tmp_path) -> dict:
    return json.loads((tmp_path / "profile.json").read_text())


def test_profile_json_splits_every_step_into_the_four_phases(fit, small_cnn, tmp_path):
    fit(small_cnn(), [StepProfile(dirpath=str(tmp_path), skip_first_steps=1)], epochs=2)
    p = profile(tmp_path)  # 24 training images in batches of 8: 3 steps an epoch
    assert p["steps"] == 6 and p["steps_measured"] == 5 and len(p["timeline"]) == 6
    assert set(p["split"]) == set(PHASES)
    assert sum(v["fraction"] for v in p["split"].values()) == pytest.approx(1.0, abs=1e-3)
    assert all(v["seconds"] > 0 for v in p["split"].values())
    assert p["throughput"]["train_images_per_s"] > 0
    assert p["throughput"]["val_images_per_s"] > 0
    assert [e["epoch"] for e in p["epochs"]] == [0, 1]
    assert p["memory"]["peak_rss_mb"] > 50
    assert p["memory"]["workers_peak_rss_mb"] == 0  # num_workers=0: no worker processes
    assert p["cpu"]["cores"] == os.cpu_count()
    assert p["loader"] == {"num_workers": 0, "batch_size": 8}
    assert "lightning_profiler" not in p


def test_dataloader_workers_memory_is_counted(fit, small_cnn, tmp_path):
    fit(
        small_cnn(),
        [StepProfile(dirpath=str(tmp_path), memory_every_n_steps=1)],
        epochs=1,
        num_workers=2,
    )
    p = profile(tmp_path)
    assert p["loader"]["num_workers"] == 2
    assert p["memory"]["workers_peak_rss_mb"] > 10  # two real worker processes
    assert 0 < p["memory"]["workers_peak_pss_mb"] <= p["memory"]["workers_peak_rss_mb"]


def test_lightning_simple_profiler_is_read_underneath(fit, small_cnn, tmp_path):
    profiler = SimpleProfiler(dirpath=str(tmp_path), filename="lightning_profile")
    fit(small_cnn(), [StepProfile(dirpath=str(tmp_path))], epochs=1, profiler=profiler)
    actions = {a["action"]: a for a in profile(tmp_path)["lightning_profiler"]}
    assert actions["run_training_epoch"]["calls"] == 1
    assert any("training_step" in name for name in actions)
    assert (tmp_path / "fit-lightning_profile.txt").is_file()


def _summary(data, forward, backward, optimizer, workers, cores=2, cpu=90.0, val=0.1):
    split = {"data": data, "forward": forward, "backward": backward, "optimizer": optimizer}
    return {
        "split": {k: {"fraction": v} for k, v in split.items()},
        "loader": {"num_workers": workers},
        "cpu": {"cores": cores, "utilisation_pct": cpu},
        "validation_fraction": val,
        "memory": {},
    }


def test_advice_puts_the_biggest_problem_first():
    advice = advise(_summary(0.6, 0.15, 0.15, 0.1, workers=0))
    assert advice[0].startswith("data loading is 60% of the step: set data.num_workers=2")
    advice = advise(_summary(0.4, 0.3, 0.2, 0.1, workers=1, cores=8))
    assert "raise data.num_workers (now 1, 8 cores) or cache resized images" in advice[0]
    advice = advise(_summary(0.02, 0.4, 0.5, 0.08, workers=2))
    assert advice == [advice[0]] and "compute-bound" in advice[0]
    advice = advise(_summary(0.02, 0.4, 0.5, 0.08, workers=2, cpu=30, val=0.5))
    assert [a.split()[0] for a in advice] == ["validation", "the", "forward+backward"]


def test_an_unfused_optimizer_taking_time_is_pointed_out(fit, small_cnn, tmp_path):
    fit(small_cnn(), [StepProfile(dirpath=str(tmp_path))], epochs=1)
    p = profile(tmp_path)
    assert p["optimizer"] == {"name": "Adam", "fused": False}
    summary = _summary(0.05, 0.3, 0.3, 0.35, workers=2)
    advice = advise({**summary, "optimizer": p["optimizer"]})
    assert advice[0].startswith("the optimizer phase is 35% of the step and Adam is not fused")
    assert "+optimizer.fused=true" in advice[0]
    assert "not fused" not in " ".join(advise({**summary, "optimizer": {"fused": True}}))


def test_a_balanced_busy_run_gets_no_advice():
    assert advise(_summary(0.1, 0.25, 0.3, 0.15, workers=2)) == []
