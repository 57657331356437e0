"""`debug=health` and `debug=profile` on the real default model (EfficientNet-Lite0, offline
pretrained weights) through train(): the healthy run fires no rule, and the run folder gets
health.json, grad_norms.csv, profile.json and report.html."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from bincount.train import train

TINY = ("experiment=smoke", "data.image_size=64", "data.num_workers=0", "test=false")


def test_healthy_default_run_fires_no_rule_and_writes_the_report(make_cfg, tiny_source):
    cfg = make_cfg(
        "debug=[health,profile]",
        *TINY,
        f"data.source={tiny_source}",
        "batch_size=2",
        "data.max_per_split=10",
    )
    train(cfg)
    run = Path(cfg.paths.output_dir)
    health = json.loads((run / "health.json").read_text())
    assert health["fired"] == [], {k: r.get("fired") for k, r in health["rules"].items()}
    for name in ("non_finite", "exploding_gradients", "vanishing_gradients", "poor_initialization"):
        assert health["rules"][name]["status"] == "ok", name
    assert len(health["layers"]) > 50  # every layer of the backbone is watched
    profile = json.loads((run / "profile.json").read_text())
    assert profile["steps"] == health["steps_checked"] == 5  # 10 images in batches of 2
    assert profile["lightning_profiler"]  # Lightning's SimpleProfiler ran underneath
    assert (run / "fit-lightning_profile.txt").is_file()
    page = (run / "report.html").read_text()
    assert "Health rules" in page and "data:image/png;base64," in page


def test_debug_configs_only_add_callbacks_and_the_profiler(make_cfg):
    base = make_cfg()
    for debug, added in (
        ("health", {"health", "run_report"}),
        ("profile", {"profile", "run_report"}),
    ):
        cfg = make_cfg(f"debug={debug}")
        assert set(cfg.callbacks) - set(base.callbacks) == added
        assert set(base.callbacks) <= set(cfg.callbacks)  # checkpoints etc. stay
        diff = {
            k for k in OmegaConf.to_container(cfg.trainer) if cfg.trainer[k] != base.trainer.get(k)
        }
        assert diff <= {"profiler"}
        assert cfg.data == base.data and cfg.model == base.model
