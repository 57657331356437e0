"""Where the project's configs live, the resolvers they use (OmegaConf; torch-free). Building
objects from them is `bincount.config.hydra` (`instantiate`): apart, so that what serves a
model (settings, the endpoint) never needs Hydra."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> Path:
    """The folder holding `conf/`: $BINCOUNT_ROOT (e.g. a SageMaker bundle), the checkout, the
    current folder if it holds conf/, else an installed copy (<prefix>/share/bincount, from
    pyproject's data-files: a non-editable `pip install`)."""
    env = os.environ.get("BINCOUNT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[3]  # src/bincount/config/__init__.py -> checkout
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


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("bincount_root"):
        OmegaConf.register_new_resolver("bincount_root", lambda: str(project_root()))


register_resolvers()
