"""Train a bin-counting model: `python train.py [HYDRA OVERRIDES]` (see conf/train.yaml).

The app is `bincount.training.app` (also `python -m bincount.training.app`)."""

from bincount.training.app import main

if __name__ == "__main__":
    main()
