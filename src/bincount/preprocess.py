"""What an image becomes before the network sees it, and what the network's extra outputs
predict: the one spelling shared by `bincount.data` and `bincount.models` (which never import
each other) and checked by `bincount.validate`. Torch-free.

The preprocessing spec is a plain dict, stored in every checkpoint (`preprocess`) so that
inference rebuilds the evaluation transform exactly:

    {"resize": "letterbox" | "squash", "image_size": int, "mean": [3 floats], "std": [3 floats]}

It is resolved once, as timm's `resolve_data_config` does: the network says its side (its
backbone's `mean` and `std`: `CountNet.data_config`), the data settings say theirs
(`data.image_size`, `data.resize`), and `resolve` joins them (`BinDataModule.preprocess`).
"""

from __future__ import annotations

from bincount.errors import BincountError

#: how an image is made square: keep the aspect ratio and pad, or stretch
RESIZES = ("letterbox", "squash")
#: the auxiliary targets (bincount.data.contents computes them from the metadata; the network's
#: extra outputs predict them in training, in this order, with model.net.aux=true)
AUX_TARGETS = ("log_volume", "log_weight", "distinct")
#: the network's side when none is given: ImageNet's statistics, no auxiliary targets
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "aux_targets": ()}


def check_resize(resize: str) -> str:
    if resize not in RESIZES:
        raise BincountError(
            f"data.resize={resize!r}: use letterbox (keep the aspect ratio, pad to a square) or "
            "squash (stretch to a square)"
        )
    return resize


def spec(image_size: int, mean, std, resize: str = "letterbox") -> dict:
    """The preprocessing a checkpoint stores (and inference applies)."""
    return {
        "resize": check_resize(resize),
        "image_size": int(image_size),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
    }


def resolve(network: dict | None, image_size: int, resize: str = "letterbox") -> dict:
    """The spec of the network's side (`mean`, `std`; ImageNet's when None) at the data's size
    and resize."""
    network = {**IMAGENET, **(network or {})}
    return spec(image_size, network["mean"], network["std"], resize)


def resize_mode(preprocess: dict) -> str:
    """The spec's resize; checkpoints from before it was a setting letterbox."""
    return check_resize(preprocess.get("resize", "letterbox"))
