"""Training runners: what `python train.py` (`bincount.training.runner.train`) runs, chosen by the
`runner` config group (conf/runner/): `fit` (the Lightning loop), `head_only` (the head on cached
frozen-backbone features), `ensemble` (several runs of train.py, probabilities averaged).
The config-instantiation helpers they share are `bincount.config.hydra.instantiate(_dict)`."""
