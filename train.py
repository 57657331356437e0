"""Train a bin-counting model: `python train.py [HYDRA OVERRIDES]` (see conf/train.yaml)."""

import sys
from pathlib import Path

from bincount import runlock, validate
from bincount.errors import BincountError

try:  # a run folder in use (hydra.run.dir=...): refused before Hydra even loads
    runlock.check_argv(sys.argv[1:])
    # model.head=... (the path before issue 25): the new one named, not Hydra's "not in struct"
    validate.check_moved_overrides(sys.argv[1:], Path(__file__).parent / "conf")
except BincountError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

import hydra
from omegaconf import DictConfig

from bincount.config import register_resolvers

register_resolvers()


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from bincount.validate import check_train_config  # torch-free: answers in about a second

    try:
        check_train_config(cfg)
        from bincount.training.runner import (
            train,  # imported here: config errors show before torch loads
        )

        return train(cfg)
    except BincountError as e:
        if _in_sweep():  # the sweeper records the trial as failed, with this line, and goes on
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
