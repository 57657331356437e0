"""Shared fixtures: the real images of ../shared/abid, small sources made from them, a composed
config, and a small trained run built once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from runner import run_small, run_train

from bincount.config import config_dir, project_root

ROOT = project_root()
ABID = Path(os.environ.get("BINCOUNT_ABID", ROOT.parent / "shared" / "abid"))

# Tests never reach a model hub: the offline check must fail fast and the same way everywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
# ... nor AWS's Price List API (cost estimates use the table; tests/sagemaker/launch/test_prices.py
# tests the API's path on a real-shaped answer).
os.environ["BINCOUNT_PRICES"] = "table"


@pytest.fixture(scope="session")
def abid() -> Path:
    """The shared mirror of the bucket (read-only: never write into it)."""
    if not (ABID / "metadata").is_dir():
        pytest.fail(f"{ABID} is missing: the tests need ../shared/abid beside the checkout")
    return ABID


def ids_by_count(folder: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for meta in sorted((folder / "metadata").glob("*.json")):
        count = json.loads(meta.read_text())["EXPECTED_QUANTITY"]
        out.setdefault(count, []).append(meta.stem)
    return out


def balanced_ids(ids: list[str], n: int, seed: int = 42) -> list[str]:
    """n of `ids` that the manifest's 60/20/20 split with `seed` (a hash of each id) divides
    exactly: round(n/5) val, as many test, the rest train. Splits are binomial per photo, so
    a tiny source of the first ids would have splits of any size (even none of a count)."""
    from bincount.data.manifest import split_of

    want = {"val": round(n * 0.2), "test": round(n * 0.2)}
    want["train"] = n - want["val"] - want["test"]
    out = []
    for image_id in ids:
        split = split_of(image_id, seed, (0.6, 0.2, 0.2))
        if want[split]:
            want[split] -= 1
            out.append(image_id)
    return out


def make_source(abid: Path, dest: Path, per_count: int, counts=(1, 2, 3, 4, 5)) -> Path:
    """A folder in the bucket layout with `per_count` real images of each count (copies), which
    the default split (seed 42, 60/20/20) divides 60/20/20 within each count."""
    (dest / "bin-images").mkdir(parents=True, exist_ok=True)
    (dest / "metadata").mkdir(parents=True, exist_ok=True)
    groups = ids_by_count(abid)
    for count in counts:
        for image_id in balanced_ids(groups[count], per_count):
            shutil.copy(abid / "bin-images" / f"{image_id}.jpg", dest / "bin-images")
            shutil.copy(abid / "metadata" / f"{image_id}.json", dest / "metadata")
    return dest


@pytest.fixture(scope="session")
def tiny_source(abid, tmp_path_factory) -> Path:
    """40 real images: 8 of each count 1..5."""
    return make_source(abid, tmp_path_factory.mktemp("tiny") / "abid", per_count=8)


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides, writing runs and caches under tmp_path."""

    def _make(*overrides: str, root: str = "train") -> DictConfig:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose(
                root,
                overrides=[
                    f"paths.data_dir={tmp_path / 'data'}",
                    f"paths.log_dir={tmp_path / 'outputs'}",
                    *overrides,
                ],
            )
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    return _make


@pytest.fixture(scope="session")
def trained_run(tiny_source, tmp_path_factory) -> Path:
    """A small real run (EfficientNet-Lite0, 96 px, 2 epochs on 40 images): its run folder,
    with config.yaml, checkpoints/best.ckpt, checkpoints/last.ckpt and metrics.json."""
    run_dir, _ = run_small(tiny_source, tmp_path_factory.mktemp("trained"))
    return run_dir


@pytest.fixture(scope="session")
def debug_run(tiny_source, tmp_path_factory) -> Path:
    """A tiny real run of the default model with `debug=[health,profile]` (64 px, 10 training
    images in batches of 2, one epoch, no test stage): its folder, with health.json,
    grad_norms.csv, profile.json, csv/metrics.csv and report.html."""
    base = tmp_path_factory.mktemp("debug")
    run_dir = base / "run"
    proc = run_train(
        "debug=[health,profile]",
        "experiment=smoke",
        f"data.source={tiny_source}",
        f"paths.data_dir={base / 'data'}",
        f"hydra.run.dir={run_dir}",
        "data.image_size=64",
        "data.max_per_split=10",
        "data.num_workers=0",
        "batch_size=2",
        "test=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


PHOTO = "01843"  # the reference project's test image: 3 objects


@pytest.fixture(scope="session")
def served_run(trained_run, tmp_path_factory) -> Path:
    """A copy of the trained run (best.ckpt, config.yaml, metrics.json), calibrated and exported
    to ONNX; the shared trained run stays untouched."""
    run = tmp_path_factory.mktemp("served") / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "best.ckpt", run / "checkpoints")
    for name in ("config.yaml", "metrics.json"):
        shutil.copy(trained_run / name, run)
    from bincount import export
    from bincount.verify import calibration

    calibration.calibrate(run)
    export.export_onnx(run)
    return run


@pytest.fixture(scope="session")
def torch_model(served_run):
    from bincount import inference

    return inference.model_fn(served_run, backend="torch")


@pytest.fixture(scope="session")
def onnx_model(served_run):
    from bincount import inference

    return inference.model_fn(served_run, backend="onnx")


@pytest.fixture(scope="session")
def photo(abid) -> bytes:
    return (abid / "bin-images" / f"{PHOTO}.jpg").read_bytes()


@pytest.fixture(scope="session")
def photos(abid) -> list[Path]:
    """12 real photos spread over the mirror."""
    paths = sorted((abid / "bin-images").glob("*.jpg"))
    return paths[:: max(1, len(paths) // 12)][:12]


@pytest.fixture
def bincount(capsys):
    """bincount(*args) -> (exit code, stdout, stderr), as the console script would give."""

    from bincount import cli

    def run(*args):
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run
