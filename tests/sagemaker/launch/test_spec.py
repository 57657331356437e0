"""Search space, cost estimate, source bundle, and what the launch side imports."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bincount.config import config_dir, project_root
from bincount.errors import BincountError
from bincount.sagemaker.launch import bundle, hpo, overrides, prices, spec


def compose_launch(*overrides):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("launch", overrides=list(overrides))


def test_train_composes_with_the_sweep_and_the_space_is_the_documented_one():
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["+sweep=hpo"])
    space = hpo.space(cfg)
    assert space.metric == cfg.optimized_metric == "val/acc"
    assert space.direction == "maximize" and space.strategy == "bayesian"
    lr, bs = space.params
    assert (lr.key, lr.type, lr.low, lr.high, lr.log) == ("lr", "float", 0.001, 0.1, True)
    assert (bs.key, bs.type, bs.choices) == ("batch_size", "categorical", (16, 32, 64, 128, 256))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.params.lr.low=0"], "log scale needs low > 0"),
        (["sweep.params.lr.low=0.5"], "must be below"),
        (["sweep.params.lr.type=weird"], "use float, int or categorical"),
        (["sweep.parallel_trials=50"], "parallel_trials <= max_trials"),
        (["sweep.objective.direction=up"], "maximize or minimize"),
    ],
)
def test_bad_search_spaces_are_clear_errors(overrides, message):
    cfg = compose_launch("+sweep=hpo", *overrides)
    with pytest.raises(BincountError, match=message):
        hpo.space(cfg)


def test_cost_estimate_on_demand_and_spot():
    est = prices.estimate("ml.g4dn.xlarge", 2, 7200, jobs=3, spot=True, spot_savings=0.7)
    assert est.on_demand_max == pytest.approx(0.736 * 2 * 2 * 3)
    assert est.spot_max == pytest.approx(est.on_demand_max * 0.3)
    text = "\n".join(est.lines())
    assert prices.PRICES_AS_OF in text and "aws.amazon.com/sagemaker/pricing" in text
    assert all(i.usd_per_hour > 0 for i in prices.INSTANCES.values())


def test_bundle_takes_code_and_configs_only(tmp_path):
    root = tmp_path / "checkout"
    src = project_root()
    for name in (
        "src/bincount/__init__.py",
        "src/bincount/training/runner.py",
        "conf/train.yaml",
        "train.py",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((src / name).read_bytes())
    (root / "requirements.txt").write_text("torch==2.14.1\nnumpy==2.4.6\n# c\n")
    junk = [
        "outputs/2026/run/checkpoints/best.ckpt",
        "data/manifests/m.csv",
        ".venv/lib/x.py",
        "src/bincount/__pycache__/train.cpython-311.pyc",
        "src/bincount/stray.ckpt",
        "conf/.ipynb_checkpoints/train.yaml",
        "src/bincount.egg-info/PKG-INFO",
    ]
    for name in junk:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    built = bundle.build(root, tmp_path / "bundle")
    assert set(built.files) == {
        "src/bincount/__init__.py",
        "src/bincount/training/runner.py",
        "conf/train.yaml",
        "train.py",
        "requirements.txt",
        "sagemaker_entry.py",
        "bundle.json",
    }
    assert (tmp_path / "bundle/requirements.txt").read_text().splitlines()[1:] == [
        "# torch==2.14.1  (the training image's own build is used)",
        "numpy==2.4.6",
    ]
    kept = bundle.build(root, tmp_path / "bundle", keep_image_torch=False)
    assert "torch==2.14.1" in (kept.path / "requirements.txt").read_text().splitlines()
    (root / "src/bincount/big.bin").write_bytes(b"0" * (bundle.MAX_FILE_BYTES + 1))
    with pytest.raises(BincountError, match="move data or weights out"):
        bundle.build(root, tmp_path / "bundle")
    assert tarfile  # (the tuning test checks the tar.gz SageMaker's script mode receives)


def test_launch_side_imports_neither_torch_nor_models_nor_the_sdk():
    code = (
        "import sys\n"
        "import importlib, pkgutil, bincount.commands.cleanup\n"
        "import bincount.sagemaker.launch as launch\n"
        "for m in pkgutil.iter_modules(launch.__path__):\n"
        "    importlib.import_module(f'bincount.sagemaker.launch.{m.name}')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sagemaker', "
        "'pytorch_lightning') or m.startswith(('bincount.models', 'bincount.training', "
        "'bincount.sagemaker.container'))]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bundle_entrypoint_is_importable_code():
    compile(bundle.ENTRY, "sagemaker_entry.py", "exec")
    assert Path(project_root() / "launch_sagemaker.py").is_file()


@pytest.mark.parametrize(
    "option", sorted(p.stem for p in (config_dir() / "sagemaker").glob("*.yaml"))
)
def test_every_sagemaker_option_composes_with_the_launch_root(option):
    from omegaconf import OmegaConf

    cfg = compose_launch(f"sagemaker={option}", "+sweep=hpo")
    cfg.paths.output_dir = "run"  # Hydra's runtime folder, set when Hydra runs the app
    OmegaConf.resolve(cfg)
    assert cfg.sagemaker.instance_count >= 1 and cfg.sagemaker.input_mode == "FastFile"
    assert cfg.sweep.objective.metric == cfg.optimized_metric
    # and the training side of it is exactly what train.py composes
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        train = compose("train", overrides=["+sweep=hpo"])
    train.paths.output_dir = "run"
    OmegaConf.resolve(train)
    assert OmegaConf.to_container(cfg.model) == OmegaConf.to_container(train.model)


def test_an_ensemble_is_refused_before_anything_is_sent():
    with pytest.raises(BincountError, match="experiment=best_single"):
        spec.build(
            compose_launch("experiment=ensemble"), overrides.split(["experiment=ensemble"]), "id"
        )
    spec.refuse_ensemble(compose_launch("experiment=best_single"))  # one model: fine
