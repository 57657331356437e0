"""The SageMaker SDK is an extra, and an install that is not a checkout still finds conf/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from bincount.config import project_root

ROOT = project_root()
OFFLINE = ("--no-index", "--no-cache-dir")


def test_every_config_folder_is_installed_and_the_sdk_is_an_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = meta["tool"]["setuptools"]["data-files"]
    conf = ROOT / "conf"
    folders = sorted(p.relative_to(ROOT).as_posix() for p in conf.rglob("*") if p.is_dir())
    assert {f"share/bincount/{f}": [f"{f}/*.yaml"] for f in ["conf", *folders]} == shipped
    assert not [p for p in (ROOT / "conf").rglob("*") if p.is_file() and p.suffix != ".yaml"]
    extra = meta["project"]["optional-dependencies"]["sagemaker"]
    assert [r.split(">")[0] for r in extra] == ["sagemaker-train"]
    assert not [d for d in meta["project"]["dependencies"] if d.startswith("sagemaker")]


def test_a_non_editable_install_composes_the_configs_outside_the_checkout(tmp_path):
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "src", "conf"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib"))  # this venv's packages, not its editable bincount
    purelib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (purelib / "site-packages" / "deps.pth").write_text(f"{site}\n")
    python = venv / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *OFFLINE, src],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    code = (
        "import bincount, bincount.config as c\n"
        "from hydra import compose, initialize_config_dir\n"
        "with initialize_config_dir(str(c.config_dir()), version_base='1.3'):\n"
        "    cfg = compose('launch', overrides=['model=resnet18', 'sagemaker=ddp'])\n"
        "print(bincount.__file__, c.config_dir(), cfg.model._target_, cfg.sagemaker.distributed)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "BINCOUNT_ROOT"}
    run = subprocess.run(
        [python, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    module, conf, target, distributed = run.stdout.split()
    assert module.startswith(str(venv)) and conf == str(venv / "share/bincount/conf")
    assert target.endswith("CountModule") and distributed == "torchrun"


def test_without_the_sdk_the_launcher_says_so_in_one_line(tmp_path):
    code = (
        "import runpy, sys\n"
        "sys.modules['sagemaker'] = None  # as if `pip install bincount` without [sagemaker]\n"
        f"sys.argv = ['launch_sagemaker.py', 'hydra.run.dir={tmp_path}', "
        "'sagemaker.role=arn:aws:iam::123456789012:role/r', 'sagemaker.region=eu-west-1', "
        "'data.source=s3://b/abid', 'dry_run=true']\n"
        f"runpy.run_path({str(ROOT / 'launch_sagemaker.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: the SageMaker SDK is not installed: pip install 'bincount[sagemaker]' "
        "(or pip install sagemaker-train==1.27.0)"
    ]
