"""The serving settings: conf/serve.yaml (serve, limits, verify, deploy, log), without torch.

Read by the local server, batch prediction, calibration and deploy; in a model archive it is
packed beside the code (`code/conf/serve.yaml`, found through $BINCOUNT_ROOT).
"""

from __future__ import annotations

from functools import lru_cache

from omegaconf import OmegaConf

from bincount.config import config_dir
from bincount.errors import BincountError


@lru_cache(maxsize=4)
def _settings(path: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def settings() -> dict:
    """conf/serve.yaml (packed beside this module in a model archive; $BINCOUNT_ROOT/conf)."""
    path = config_dir() / "serve.yaml"
    if not path.is_file():
        raise BincountError(f"{path} is missing: the serving settings live there")
    return _settings(str(path))
