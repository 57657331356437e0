"""The Hydra app of `python train.py [OVERRIDES]`, also `python -m bincount.training.app
[OVERRIDES]` (how an ensemble trains its members: a module of the package, not a script).

A run folder in use (`hydra.run.dir=...`) is refused before Hydra loads (`bincount.runlock`),
the config's numbers and choices are checked before torch loads (`bincount.validate`), then
`bincount.training.runner.train` runs. A BincountError is one line on stderr and exit 2 (in a
sweep, the sweeper records the trial as failed with that line and goes on). The job is named
`train` (conf/hydra/default.yaml): its log is `<run>/train.log` whichever way it started.
"""

from __future__ import annotations

import sys

from bincount import runlock, validate
from bincount.errors import BincountError


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _train(cfg) -> float:
    from bincount.validate import check_train_config  # torch-free: answers in about a second

    try:
        check_train_config(cfg)
        from bincount.training.runner import train  # here: config errors show before torch

        return train(cfg)
    except BincountError as e:
        if _in_sweep():  # the sweeper records the trial as failed, with this line, and goes on
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Hydra's main over conf/train.yaml, with the command line's overrides."""
    from bincount.config import config_dir

    try:  # a run folder in use (hydra.run.dir=...): refused before Hydra even loads
        runlock.check_argv(sys.argv[1:])
        # model.head=... (the path before issue 25): the new one named, not Hydra's "not in struct"
        validate.check_moved_overrides(sys.argv[1:], config_dir())
    except BincountError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    import hydra

    from bincount.config import register_resolvers

    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(_train)()


if __name__ == "__main__":
    main()
