"""train(cfg) -> float: run the training runner the config selects (`runner`, conf/runner/).

`runner=fit` (the default) builds everything from the config, fits, tests and writes the run's
files (`bincount.training.fit`); `experiment=head_sweep` selects `head_only`, `experiment=ensemble`
`ensemble`. The returned number is `cfg.optimized_metric` (best `val/acc` by default): what
sweeps optimize.
"""

from __future__ import annotations

from omegaconf import DictConfig

from bincount import runlock
from bincount.config.hydra import instantiate

#: the runner a config without a `runner` node (composed before runners existed) gets
DEFAULT_RUNNER = {"_target_": "bincount.training.fit.run", "_partial_": True}


def train(cfg: DictConfig) -> float:
    """Run the config's runner in its run folder, which this process holds for the time
    (`bincount.runlock`: a second training into it is refused)."""
    out = cfg.paths.output_dir
    held = runlock.holds(out)  # python train.py: Hydra's callback took it already
    runlock.acquire(out, resume=True)  # resume: the finished-run check is the callback's
    try:
        runner = instantiate(cfg.get("runner") or DEFAULT_RUNNER)
        return runner(cfg)
    finally:
        if not held:
            runlock.release(out)
