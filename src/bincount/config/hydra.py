"""`instantiate`: Hydra's, with bincount's errors kept as they are; every object the configs
describe is built through it. Torch-free."""

from __future__ import annotations

from omegaconf import DictConfig

from bincount.errors import BincountError


def instantiate(node, *args, **kwargs):
    """hydra's instantiate, but a BincountError raised by the target comes out as itself
    (hydra wraps it in an InstantiationException with a long prefix)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, *args, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, BincountError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def instantiate_dict(node: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a config dict (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if isinstance(v, DictConfig) and "_target_" in v]
