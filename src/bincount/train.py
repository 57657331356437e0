"""train(cfg) -> float: run the training runner the config selects (`runner`, conf/runner/).

`runner=fit` (the default) builds everything from the config, fits, tests and writes the run's
files (`bincount.training.fit`); `experiment=head_sweep` selects `head_only`, `experiment=ensemble`
`ensemble`. The returned number is `cfg.optimized_metric` (best `val/acc` by default): what
sweeps optimize.
"""

from __future__ import annotations

from omegaconf import DictConfig

from bincount.training.hydra import instantiate

#: the runner a config without a `runner` node (composed before runners existed) gets
DEFAULT_RUNNER = {"_target_": "bincount.training.fit.run", "_partial_": True}


def train(cfg: DictConfig) -> float:
    runner = instantiate(cfg.get("runner") or DEFAULT_RUNNER)
    return runner(cfg)
