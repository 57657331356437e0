"""`model_fn`: load a run folder, a checkpoint or an ONNX export, without Lightning.

- `model_fn(model_dir)`: a run folder (`checkpoints/best.ckpt` with `config.yaml` and
  `metrics.json` beside it: also the layout of a training job's SM_MODEL_DIR), a `.ckpt`, or an
  ONNX export (`bincount export`). The preprocessing is the checkpoint's own (`preprocess`),
  rebuilt by `bincount.data.transforms`; `calibration.json` (`bincount calibrate`) is used when
  present.
- `load_net(ckpt)`: the checkpoint's `CountNet` (models/network.py), built from its
  hyper_parameters and given its state_dict with plain `torch.load` (weights only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bincount import rundir
from bincount.data import transforms
from bincount.errors import BincountError
from bincount.models.network import CountNet

log = logging.getLogger(__name__)

CALIBRATION = rundir.CALIBRATION  # the run folder's names are rundir's
ONNX_META = "model.json"
# The state_dict prefixes of the net (a CountModule's checkpoint keys are its CountNet's).
NET_KEYS = ("net.", "head.")


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
        return resolve(rundir.run_folder(path), "onnx")
    if backend == "onnx":
        for candidate in (path / "model.onnx", path / rundir.ONNX_DIR / "model.onnx"):
            if candidate.is_file():
                return candidate
        raise BincountError(
            f"no ONNX model in {path}: run `bincount export {path}` first, or use --backend torch"
        )
    for candidate in (path / rundir.BEST_CKPT, path / rundir.BEST, path / "model.ckpt"):
        if candidate.is_file():
            return candidate
    members = sorted(p.name for p in (path / rundir.MEMBERS).glob("*") if p.is_dir())
    if members:
        raise BincountError(
            f"{path} is an ensemble run (members: {', '.join(members)}): one model is served, "
            f"exported or deployed at a time, e.g. {path / rundir.MEMBERS / members[0]}; "
            f"`bincount evaluate {' '.join(str(path / rundir.MEMBERS / m) for m in members)}` "
            "scores them together"
        )
    raise BincountError(
        f"no checkpoint in {path} (looked for checkpoints/best.ckpt, best.ckpt, model.ckpt): "
        "give a run folder of `python train.py` or a .ckpt file"
    )


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


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _state_mismatch(net: CountNet, state: dict) -> str | None:
    """What keeps `state` from loading into `net`, in a few words (None: it fits)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        k
        for k in own
        if k in state and tuple(own[k].shape) != tuple(getattr(state[k], "shape", ()))
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = [
        f"{len(keys)} {what} (e.g. {keys[0]})"
        for keys, what in (
            (missing, "missing"),
            (unexpected, "unexpected"),
            (shapes, "of another shape"),
        )
        if keys
    ]
    return ", ".join(parts)


def load_net(ckpt: Path) -> CountNet:
    """The CountNet of a checkpoint, in eval mode, without Lightning or downloading weights.
    A file that is no checkpoint, no bincount checkpoint, or holds the weights of another
    network than its hyper_parameters describe: BincountError, one line saying which."""
    ckpt = Path(ckpt)
    fix = "pass a checkpoint written by `python train.py` with this version of bincount"
    # The net is built without pretrained weights because the checkpoint's replace them: the
    # backbone's "starts from random weights" warning would be wrong here.
    quiet = logging.getLogger("bincount.models.backbones")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        try:  # weights_only loading, with OmegaConf containers allowed (no arbitrary pickles)
            with torch.serialization.safe_globals(_checkpoint_globals()):
                blob = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, not torch's, or pickles beyond tensors
            raise BincountError(
                f"{ckpt} is not a checkpoint that loads: truncated, or another kind of file "
                f"({_first_line(e)}): {fix}"
            ) from None
        if not isinstance(blob, dict) or not {"hyper_parameters", "state_dict"} <= blob.keys():
            raise BincountError(
                f"{ckpt} is a PyTorch file but not a bincount checkpoint (no hyper_parameters "
                f"and state_dict): {fix}"
            )
        try:
            hparams = dict(blob["hyper_parameters"])
            state = {k: v for k, v in blob["state_dict"].items() if k.startswith(NET_KEYS)}
            # its `net` record, or an older checkpoint's flat arguments (from_checkpoint)
            net = CountNet.from_checkpoint(hparams, pretrained=False)
        except Exception as e:
            raise BincountError(
                f"{ckpt}: its hyper_parameters do not describe a network bincount builds "
                f"({_first_line(e)}): {fix}"
            ) from None
        mismatch = _state_mismatch(net, state)
        if mismatch:
            raise BincountError(
                f"{ckpt} holds the weights of another network than its hyper_parameters build "
                f"(backbone {net.backbone_name}): {mismatch} weights: {fix}"
            )
        try:
            net.load_state_dict(state)
        except Exception as e:
            raise BincountError(
                f"{ckpt}: its weights do not load ({_first_line(e)}): {fix}"
            ) from None
    finally:
        quiet.setLevel(level)
    return net.eval()


def _load_torch(ckpt: Path) -> tuple[Callable, dict, list[int], dict]:
    net = load_net(ckpt)

    def logits(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return net(x).float().numpy()

    info = {"name": net.backbone_name, "version": file_version(ckpt), "checkpoint": ckpt.name}
    return logits, dict(net.preprocess), list(net.counts), info


def _load_onnx(path: Path) -> tuple[Callable, dict, list[int], dict]:
    from bincount.inference.onnx import OnnxNet

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
    run = rundir.run_folder(path)
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
