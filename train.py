"""Train a bin-counting model: `python train.py [HYDRA OVERRIDES]` (see conf/train.yaml)."""

import sys

import hydra
from omegaconf import DictConfig

from bincount.config import register_resolvers
from bincount.errors import BincountError

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from bincount.validate import check_train_config  # torch-free: answers in about a second

    try:
        check_train_config(cfg)
        from bincount.train import train  # imported here: config errors show before torch loads

        return train(cfg)
    except BincountError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
