"""SageMaker's PyTorch serving contract: `model_fn`, `input_fn`, `predict_fn`, `output_fn`.

Every way of asking the model for a count goes through these four functions: the local server
(`bincount serve`), batch prediction (`bincount predict`) and the SageMaker endpoint (this
module is packed into the model archive as `code/inference.py`).

- `model_fn(model_dir)`: a run folder (`checkpoints/best.ckpt` with `config.yaml` and
  `metrics.json` beside it: also the layout of a training job's SM_MODEL_DIR), a `.ckpt`, or an
  ONNX export (`bincount export`). The preprocessing is the checkpoint's own (`preprocess`),
  rebuilt by `bincount.data.transforms`; `calibration.json` (`bincount calibrate`) is used when
  present.
- `input_fn(body, content_type)`: `image/jpeg`, `image/png`, `application/x-image`, or
  `application/json` with `{"image": BASE64, "expected": 3}` or `{"images": [BASE64 or
  {"image": BASE64, "expected": 3}, ...]}`. Bad input raises `InputError` (a 4xx status and a
  message saying what was wrong).
- `predict_fn(request, model)`: count, probabilities per count, mean count, confidence and,
  when an expected quantity is given, a verdict (`match`, `mismatch`, `unsure`).
- `output_fn(prediction, accept)`: JSON.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image, UnidentifiedImageError

from bincount import verification
from bincount.config import config_dir
from bincount.data import transforms
from bincount.errors import BincountError

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
# Decoders tried on request bodies: only these (PIL would otherwise try every plugin it has).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
CALIBRATION = "calibration.json"
ONNX_META = "model.json"


class InputError(BincountError):
    """A request the model cannot answer; `status` is the HTTP status it deserves."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Model:
    """What `model_fn` loads: a network (torch or onnxruntime) and how to read its output."""

    logits: Callable[[torch.Tensor], np.ndarray]
    transform: Callable
    preprocess: dict
    counts: list[int]
    info: dict
    temperature: float = 1.0
    thresholds: dict | None = None


@dataclasses.dataclass
class Request:
    """Checked image bytes (decoded by `predict_fn`, at the model's size), the expected quantity
    of each (or None), their names in error messages, and whether a list was sent."""

    images: list[bytes]
    expected: list[int | None]
    batch: bool = False
    names: list[str] = dataclasses.field(default_factory=lambda: ["the body"])
    # Pixels the images' headers claim, summed (limits.max_request_pixels bounds it).
    pixels: int = 0


@lru_cache(maxsize=4)
def _settings(path: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def settings() -> dict:
    """conf/serve.yaml (packed beside this module in a model archive; $BINCOUNT_ROOT/conf)."""
    path = config_dir() / "serve.yaml"
    if not path.is_file():
        raise BincountError(f"{path} is missing: the serving settings live there")
    return _settings(str(path))


# ---------------------------------------------------------------- model_fn


def resolve(path: str | os.PathLike, backend: str = "torch") -> Path:
    """The file to load for `backend` from a run folder, a checkpoint or an export folder."""
    path = Path(path).expanduser()
    if backend not in ("torch", "onnx"):
        raise BincountError(f"backend {backend!r} is not one of torch, onnx")
    if not path.exists():
        raise BincountError(f"{path} does not exist: give a run folder, a .ckpt or an ONNX export")
    if path.is_file():
        if path.suffix == ".onnx" or backend == "torch":
            return path
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return resolve(run, "onnx")
    if backend == "onnx":
        for candidate in (path / "model.onnx", path / "onnx" / "model.onnx"):
            if candidate.is_file():
                return candidate
        raise BincountError(
            f"no ONNX model in {path}: run `bincount export {path}` first, or use --backend torch"
        )
    for candidate in (path / "checkpoints" / "best.ckpt", path / "best.ckpt", path / "model.ckpt"):
        if candidate.is_file():
            return candidate
    members = sorted(p.name for p in (path / "members").glob("*") if p.is_dir())
    if members:
        raise BincountError(
            f"{path} is an ensemble run (members: {', '.join(members)}): one model is served, "
            f"exported or deployed at a time, e.g. {path / 'members' / members[0]}; "
            f"`bincount evaluate {' '.join(str(path / 'members' / m) for m in members)}` "
            "scores them together"
        )
    raise BincountError(
        f"no checkpoint in {path} (looked for checkpoints/best.ckpt, best.ckpt, model.ckpt): "
        "give a run folder of `python train.py` or a .ckpt file"
    )


def run_folder(model_file: Path) -> Path:
    """The run folder a checkpoint or export belongs to (where calibration.json lives)."""
    parent = model_file.parent
    return parent.parent if parent.name in ("checkpoints", "onnx") else parent


def file_version(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _checkpoint_globals() -> list:
    """What a checkpoint's hparams may hold beyond tensors (Hydra passes OmegaConf lists)."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig, base, nodes

    return [
        typing.Any,
        dict,
        list,
        int,
        collections.defaultdict,
        DictConfig,
        ListConfig,
        nodes.AnyNode,
        base.Metadata,
        base.ContainerMetadata,
    ]


def load_module(ckpt: Path):
    """The CountModule of a checkpoint, in eval mode, without downloading any weights."""
    from bincount.models.module import CountModule

    # The net is built without pretrained weights because the checkpoint's replace them: the
    # backbone's "starts from random weights" warning would be wrong here.
    quiet = logging.getLogger("bincount.models.backbones")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # weights_only loading, with OmegaConf containers allowed (no arbitrary pickles)
        with torch.serialization.safe_globals(_checkpoint_globals()):
            module = CountModule.load_from_checkpoint(ckpt, pretrained=False, map_location="cpu")
    except Exception as e:  # a truncated or foreign file fails deep inside torch
        raise BincountError(f"{ckpt} is not a bincount checkpoint ({e}): pass a .ckpt") from None
    finally:
        quiet.setLevel(level)
    return module.eval()


def _load_torch(ckpt: Path) -> tuple[Callable, dict, list[int], dict]:
    module = load_module(ckpt)

    def logits(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(x).float().numpy()

    info = {"name": module.hparams.backbone, "version": file_version(ckpt), "checkpoint": ckpt.name}
    return logits, dict(module.preprocess), list(module.counts), info


def _load_onnx(path: Path) -> tuple[Callable, dict, list[int], dict]:
    from bincount.export import OnnxNet

    meta_path = path.with_name(ONNX_META)
    if not meta_path.is_file():
        raise BincountError(f"{meta_path} is missing: re-run `bincount export` for {path}")
    meta = json.loads(meta_path.read_text())
    # One thread per request, without busy-waiting: one image 18.9 ms end to end against
    # 27.4 ms with onnxruntime's defaults on 2 shared cores (benchmarks/bench_infer.py); the
    # server's own threads run requests side by side. BINCOUNT_ONNX_THREADS=0: all cores.
    raw = os.environ.get("BINCOUNT_ONNX_THREADS", "1")
    if not raw.isdigit():
        raise BincountError(f"BINCOUNT_ONNX_THREADS={raw!r}: use a whole number (0: all cores)")
    threads = int(raw)
    net = OnnxNet(path, threads=threads, spin=threads != 1)
    info = {"name": meta["name"], "version": meta["version"], "checkpoint": meta["checkpoint"]}
    return lambda x: net(x.numpy()), meta["preprocess"], meta["counts"], info


def model_fn(model_dir: str | os.PathLike, backend: str | None = None) -> Model:
    """Load a run folder, checkpoint or ONNX export (backend: torch, onnx; $BINCOUNT_BACKEND)."""
    backend = backend or os.environ.get("BINCOUNT_BACKEND") or "torch"
    path = resolve(model_dir, backend)
    backend = "onnx" if path.suffix == ".onnx" else "torch"
    logits, preprocess, counts, info = (_load_onnx if backend == "onnx" else _load_torch)(path)
    run = run_folder(path)
    info = {**info, "backend": backend, "run": run.name, "calibrated": False}
    model = Model(
        logits=logits,
        transform=transforms.build(preprocess, train=False),
        preprocess=preprocess,
        counts=[int(c) for c in counts],
        info=info,
    )
    calibration = path.parent / CALIBRATION
    if not calibration.is_file():
        calibration = run / CALIBRATION
    if calibration.is_file():
        cal = json.loads(calibration.read_text())
        if cal.get("version") != info["version"]:
            log.warning(
                "%s is for model version %s, not %s: ignored (run `bincount calibrate %s`)",
                calibration,
                cal.get("version"),
                info["version"],
                run,
            )
        else:
            model.temperature = float(cal["temperature"])
            model.thresholds = cal["thresholds"]
            info["calibrated"] = True
    return model


# ---------------------------------------------------------------- input_fn


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def parse_expected(value: Any, where: str = "expected") -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InputError(f"{where}={value!r} is not a whole number: send e.g. 3") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where}={value!r} is not a count: send a whole number >= 0, e.g. 3")
    return value


def check_image(data: bytes, limits: dict, what: str = "the body") -> bytes:
    """Check image bytes from their header (format, dimensions) without decoding them."""
    image_size(data, limits, what)
    return data


def image_size(data: bytes, limits: dict, what: str = "the body") -> tuple[int, int]:
    """(width, height) of checked image bytes, read from the header (PIL opens lazily)."""
    if not data:
        raise InputError(f"{what} is empty: send the bytes of a JPEG or PNG photo")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            width, height = probe.size
    except UnidentifiedImageError:
        raise InputError(
            f"{what} is not an image ({len(data)} bytes that are not JPEG, PNG, WebP or BMP): "
            "send a photo"
        ) from None
    except Image.DecompressionBombError as e:  # beyond PIL's own hard limit
        raise InputError(
            f"{what} is far too large an image ({e}); the limit is {limits['max_pixels']} "
            "pixels (limits.max_pixels in conf/serve.yaml): send a smaller photo",
            413,
        ) from None
    except Exception as e:
        raise InputError(f"{what} is not a readable image ({e}): send a JPEG or PNG") from None
    max_pixels = int(limits["max_pixels"])
    if width * height > max_pixels:
        raise InputError(
            f"{what} is {width}x{height} pixels, more than the limit of {max_pixels} "
            "(limits.max_pixels in conf/serve.yaml): send a smaller photo",
            413,
        )
    return width, height


def check_budget(sizes: list[tuple[int, int]], limits: dict) -> int:
    """The pixels of a request's images, summed; 413 over limits.max_request_pixels."""
    pixels = sum(w * h for w, h in sizes)
    budget = limits.get("max_request_pixels")
    if budget is not None and pixels > int(budget):
        raise InputError(
            f"the request's {len(sizes)} image(s) hold {pixels} pixels in all, more than the "
            f"budget of {int(budget)} (limits.max_request_pixels in conf/serve.yaml): send "
            "fewer or smaller images per request",
            413,
        )
    return pixels


def decode_image(data: bytes, size: int, what: str = "the body") -> Image.Image:
    """Decode checked image bytes as training did (PIL draft at `size`, RGB), then shrink a
    large image at once: JPEG decodes at a reduced scale (draft); PNG and others decode in
    full, then are box-reduced by an integer factor that keeps at least twice `size` on the
    short side (what the letterbox's own resize, reducing_gap=2, reduces by anyway), so a
    request holds one full-size image at a time."""
    try:
        im = transforms.open_rgb(data, size)
        factor = min(im.size) // (2 * size)
        return im.reduce(factor) if factor >= 2 else im
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on broken data
        raise InputError(
            f"{what} does not decode: the image is truncated or corrupt ({e}); send it again"
        ) from None


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a base64 string, not {type(value).__name__}")
    if value.startswith("data:") and "," in value:  # a data URL, as a browser makes them
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64: encode the image bytes") from None


def _json_items(body: bytes | str, limits: dict) -> tuple[list[tuple[bytes, Any, str]], bool]:
    """[(image bytes, expected, name)] from a JSON body, and whether it held a list."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f'the body is not valid JSON ({e}): send {{"image": BASE64}}') from None
    shape = 'send {"image": BASE64, "expected": 3} or {"images": [BASE64, ...]}'
    if not isinstance(doc, dict):
        raise InputError(f"the JSON body is a {type(doc).__name__}, not an object: {shape}")
    if "image" in doc:
        return [(_b64(doc["image"], "image"), doc.get("expected"), "image")], False
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise InputError(f"the JSON body has no 'image' or non-empty 'images' list: {shape}")
    if len(images) > int(limits["max_images"]):
        raise InputError(
            f"{len(images)} images in one request, more than {limits['max_images']} "
            "(limits.max_images): split the request",
            413,
        )
    expected = doc.get("expected")
    if expected is not None and (not isinstance(expected, list) or len(expected) != len(images)):
        raise InputError("'expected' must be a list as long as 'images' (or give it per image)")
    items = []
    for i, item in enumerate(images):
        name = f"images[{i}]"
        exp = expected[i] if expected else None
        if isinstance(item, dict):
            exp = item.get("expected", exp)
            item = item.get("image")
        items.append((_b64(item, name), exp, name))
    return items, True


def input_fn(body: bytes | str, content_type: str | None) -> Request:
    """Check a request body against the limits of conf/serve.yaml; InputError if it is bad."""
    limits = settings()["limits"]
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = bytes(body or b"")
    if len(body) > int(limits["max_body_bytes"]):
        raise InputError(
            f"the body is {len(body)} bytes, more than {limits['max_body_bytes']} "
            "(limits.max_body_bytes in conf/serve.yaml)",
            413,
        )
    media = _media_type(content_type)
    if media in IMAGE_TYPES:
        pixels = check_budget([image_size(body, limits)], limits)
        return Request([body], [None], pixels=pixels)
    if media == JSON_TYPE:
        if not body:
            raise InputError('the body is empty: send {"image": BASE64}')
        items, batch = _json_items(body, limits)
        pixels = check_budget([image_size(data, limits, name) for data, _, name in items], limits)
        images = [data for data, _, _ in items]
        expected = [parse_expected(e, f"{name}.expected") for _, e, name in items]
        return Request(images, expected, batch, [name for _, _, name in items], pixels)
    accepted = ", ".join((*IMAGE_TYPES, JSON_TYPE))
    raise InputError(
        f"content type {content_type or '(none)'!r} is not supported: use one of {accepted}",
        415,
    )


def with_expected(request: Request, expected: Any) -> Request:
    """The request with one expected quantity for every image (e.g. from `?expected=3`)."""
    value = parse_expected(expected)
    if value is None:
        return request
    return dataclasses.replace(request, expected=[value] * len(request.images))


# ---------------------------------------------------------------- predict_fn


def probabilities(model: Model, images: list[Image.Image]) -> np.ndarray:
    """Calibrated probabilities, one row per (decoded) image, one column per count."""
    x = torch.stack([model.transform(im) for im in images])
    logits = model.logits(x).astype(np.float64) / model.temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def predict_fn(request: Request, model: Model) -> dict:
    size = model.preprocess["image_size"]
    names = request.names if len(request.names) == len(request.images) else None
    images = [
        decode_image(data, size, names[i] if names else f"images[{i}]")
        for i, data in enumerate(request.images)
    ]
    probs = probabilities(model, images)
    counts = np.asarray(model.counts)
    answers = []
    for p, expected in zip(probs, request.expected, strict=True):
        best = int(p.argmax())
        answer = {
            "count": int(counts[best]),
            "probabilities": {str(c): round(float(q), 6) for c, q in zip(counts, p, strict=True)},
            "mean_count": round(float((p * counts).sum()), 4),
            "confidence": round(float(p[best]), 6),
        }
        if expected is not None:
            answer.update(verification.verdict(expected, p, model.counts, model.thresholds))
        answers.append(answer)
    model_info = {k: model.info[k] for k in ("name", "version", "backend", "calibrated")}
    if request.batch:
        return {"predictions": answers, "model": model_info}
    return {**answers[0], "model": model_info}


# ---------------------------------------------------------------- output_fn


def check_accept(accept: str | None) -> None:
    """Refuse (406) an Accept header that JSON does not satisfy; `output_fn` answers JSON."""
    kinds = [_media_type(part) for part in (accept or "").split(",")]
    if not any(k in ("", "*/*", JSON_TYPE, "application/*") for k in kinds):
        raise InputError(f"cannot answer in {accept!r}: accept {JSON_TYPE}", 406)


def output_fn(prediction: dict, accept: str | None) -> str:
    check_accept(accept)
    return json.dumps(prediction)
