"""Hydra sweepers `hydra/sweeper=optuna` and `grid`: the search space of `+sweep=hpo`, run
locally.

Hydra imports this package before it composes a config, so it also registers a config node
that takes new keys without `+` (Hydra closes every node it composes, and YAML cannot reopen
one): `defaults: [/bincount_open_dict@environment]` in conf/sagemaker/default.yaml makes
`environment` open, so `sagemaker.environment.FOO=bar` works as written. It lives here rather
than in bincount.config so that what imports bincount (the endpoint, through settings) needs no
Hydra."""

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

OPEN_DICT = "bincount_open_dict"

_node = OmegaConf.create({})
OmegaConf.set_struct(_node, False)
ConfigStore.instance().store(name=OPEN_DICT, node=_node)
