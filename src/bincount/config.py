"""Hydra/OmegaConf glue: resolvers the configs use, where the project's configs live, and
`instantiate` (Hydra's, with bincount's errors kept as they are). Torch-free."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bincount.errors import BincountError


def project_root() -> Path:
    """The folder holding `conf/`: $BINCOUNT_ROOT (e.g. a SageMaker bundle), the checkout, the
    current folder if it holds conf/, else an installed copy (<prefix>/share/bincount, from
    pyproject's data-files: a non-editable `pip install`)."""
    env = os.environ.get("BINCOUNT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]  # src/bincount/config.py -> checkout
    if (here / "conf").is_dir():
        return here
    cwd = Path.cwd().resolve()
    if (cwd / "conf").is_dir():
        return cwd
    installed = Path(sys.prefix) / "share" / "bincount"
    if (installed / "conf").is_dir():
        return installed
    return cwd


def config_dir() -> Path:
    return project_root() / "conf"


def user_cache_dir() -> Path:
    """The launch machine's cache of bincount (wheels of offline bundles, AWS prices):
    $BINCOUNT_CACHE_DIR, else $XDG_CACHE_HOME/bincount, else ~/.cache/bincount."""
    env = os.environ.get("BINCOUNT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bincount"


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


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("bincount_root"):
        OmegaConf.register_new_resolver("bincount_root", lambda: str(project_root()))


register_resolvers()
