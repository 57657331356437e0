"""`bincount cache images`: build the resized-image cache that `data.resized_cache=true` reads."""

from __future__ import annotations


def register(sub) -> dict:
    p = sub.add_parser(
        "cache",
        help="build caches that make training faster (resized images)",
        description="Build a cache once; later runs with the same settings reuse it.",
    )
    caches = p.add_subparsers(dest="cache", metavar="CACHE", required=True)
    images = caches.add_parser(
        "images",
        help="make every image of a run's manifest square at the training size, once",
        description="Decode the images of the manifest that `python train.py` with the same "
        "data settings would use and make them square as data.resize says (letterbox or "
        "squash), into <cache_dir>/resized/. Train with data.resized_cache=true to read them "
        "from there. Rebuilt when the size, data.resize or the source changes. Arguments are "
        "Hydra overrides of conf/train.yaml (data.*, model=...).",
    )
    images.add_argument(
        "overrides", nargs="*", metavar="OVERRIDE", help="e.g. data.image_size=320 model=resnet18"
    )
    return {"cache images": images}


def compose(overrides: list[str]):
    """conf/train.yaml with these overrides, as `python train.py OVERRIDES` would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from bincount.config import config_dir
    from bincount.errors import BincountError

    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose("train", overrides=overrides)
    except HydraException as e:
        raise BincountError(f"bad override ({e}): use the keys of conf/train.yaml") from None


def run_images(args) -> int:
    from bincount.validate import check_train_config

    cfg = compose(list(args.overrides))
    check_train_config(cfg)  # before torch loads, as train.py does
    import timm

    from bincount.config.hydra import instantiate
    from bincount.models import backbones

    # The padding colour is the backbone's mean, as in training (no weights are needed).
    model = timm.create_model(cfg.model.net.backbone, pretrained=False)
    mean, std = backbones.normalization(model)
    network = {"mean": mean, "std": std}  # the net's side (CountNet.data_config) without a net
    datamodule = instantiate(cfg.data, network=network, resized_cache=True)
    datamodule.prepare_data()
    print(f"resized-image cache: {datamodule.cache.path} ({len(datamodule.cache)} images)")
    print("train with data.resized_cache=true to read it")
    return 0
