"""Run `python train.py OVERRIDES` as a SageMaker job: `python launch_sagemaker.py OVERRIDES`.

See conf/launch.yaml and conf/sagemaker/; the logic is in bincount.sagemaker.launch.launcher.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bincount import validate
from bincount.config import register_resolvers
from bincount.errors import BincountError
from bincount.sagemaker.launch.launcher import launch

try:  # model.head=... (the path before issue 25): the new one named, as train.py does
    validate.check_moved_overrides(sys.argv[1:], Path(__file__).parent / "conf")
except BincountError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="launch")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        launch(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
    except BincountError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
