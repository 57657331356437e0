"""The SageMaker SDK is an extra, an install that is not a checkout still finds conf/, and an
offline bundle carries the wheels of the image's Python and installs with no index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

from bincount.config import project_root
from bincount.errors import BincountError

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


# ----- the offline bundle: wheels for the image's Python, pip without an index -----

AWS_IMAGE = "763104351884.dkr.ecr.{region}.amazonaws.com/pytorch-training:{tag}"


def pypi_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


needs_pypi = pytest.mark.skipif(
    not pypi_reachable(),
    reason="PyPI (pypi.org:443) is unreachable: the offline bundle's wheels are resolved and "
    "downloaded from the package index on the launch machine",
)


def test_the_image_tag_gives_the_wheels_python_torch_and_platform():
    from bincount.sagemaker.launch.wheels import target_of

    t = target_of(AWS_IMAGE.format(region="us-east-1", tag="2.10.0-gpu-py313"))
    assert (t.python, t.torch, t.abi, t.tag) == ("3.13", "2.10.0", "cp313", t.tag)
    assert t.tag == "cp313-manylinux_2_35_x86_64"
    assert t.platforms()[0] == "manylinux_2_35_x86_64" and "manylinux2014_x86_64" in t.platforms()
    t = target_of(AWS_IMAGE.format(region="eu-west-1", tag="2.5.1-cpu-py311-ubuntu22.04-sagemaker"))
    assert (t.python, t.torch, t.glibc_minor) == ("3.11", "2.5.1", 35)
    t = target_of(
        AWS_IMAGE.format(region="eu-west-1", tag="2.3.0-gpu-py311-cu121-ubuntu20.04-sagemaker")
    )
    assert t.glibc_minor == 31
    with pytest.raises(BincountError, match="cannot tell the Python of the image"):
        target_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com/mine:latest")


def test_wheels_auto_follows_isolation_and_vpc():
    from omegaconf import OmegaConf

    from bincount.sagemaker.launch.bundle import wants_wheels

    def sm(**kw):
        return OmegaConf.create(kw)

    assert not wants_wheels(sm())
    assert not wants_wheels(
        sm(bundle={"wheels": "auto"}, vpc={"subnets": [], "security_groups": []})
    )
    assert wants_wheels(sm(bundle={"wheels": "auto"}, network_isolation=True))
    assert wants_wheels(sm(vpc={"subnets": ["subnet-1"], "security_groups": ["sg-1"]}))
    assert wants_wheels(sm(bundle={"wheels": True}))
    assert not wants_wheels(sm(bundle={"wheels": False}, network_isolation=True))
    with pytest.raises(BincountError, match="use true, false or auto"):
        wants_wheels(sm(bundle={"wheels": "sometimes"}))


def test_the_closure_uses_the_targets_markers_and_stops_at_the_images_torch():
    from bincount.sagemaker.launch.wheels import Target, closure

    requires = {
        "a": ['b; python_version < "3.12"', 'c; python_version >= "3.12"', "torch", "d[x]"],
        "b": [],
        "c": [],
        "d": ['e; extra == "x"', 'f; extra == "y"'],
        "e": [],
        "torch": ["nvidia-cudnn-cu12", "sympy"],
    }
    assert closure(["a==1"], requires, Target("3.13", "2.10.0").markers()) == {"a", "c", "d", "e"}
    assert closure(["a==1"], requires, Target("3.11", "2.10.0").markers()) == {"a", "b", "d", "e"}


def test_the_harness_pip_reaches_no_index_and_gets_none_of_the_test_environment(tmp_path):
    """The "container" of container_harness.py: no index, no pip.conf, no HF_HUB_OFFLINE."""
    sys.path.insert(0, str(Path(__file__).parent))
    import container_harness as harness

    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set for every test (tests/conftest.py)
    env = harness._base_env(tmp_path, {"AWS_REGION": "eu-west-1"}, "job", {})
    assert not [k for k in env if k.endswith("_OFFLINE") or k == "PIP_FIND_LINKS"]
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["PIP_NO_INDEX"] == "1"
    assert harness.aws_only({"AWS_REGION": "x", "HF_HUB_OFFLINE": "1", "PIP_FIND_LINKS": "/w"}) == {
        "AWS_REGION": "x"
    }
    proc = subprocess.run(  # even without --no-index, the only index is a closed port
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path), "six"],
        env={**env, "PIP_NO_INDEX": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "5"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and not list(tmp_path.glob("*.whl"))
    assert "127.0.0.1" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.slow
@needs_pypi
def test_the_bundle_resolves_for_the_real_images_python_and_refuses_a_pin_without_a_wheel(
    tmp_path, monkeypatch
):
    """pytorch-training:2.10.0-gpu-py313, the image the launcher picks: every pin of the job has
    a cp313 manylinux wheel (antlr4-python3-runtime, sdist-only, is built here as py3-none-any)
    and nothing of the image's torch is bundled; a pin with neither (PyYAML 6.0.1 has no cp313
    wheel and a C extension) stops the launch with its name."""
    from bincount.sagemaker.launch import bundle, wheels

    monkeypatch.setenv("BINCOUNT_CACHE_DIR", str(tmp_path / "cache"))
    target = wheels.target_of(AWS_IMAGE.format(region="us-east-1", tag="2.10.0-gpu-py313"))
    built = bundle.build(ROOT, tmp_path / "bundle", optional=set(), target=target)
    names = {wheels.canonical(w.split("-")[0]) for w in built.wheels}
    pins = {bundle.requirement_name(p) for p in bundle.pins(bundle.requirements(ROOT, True, set()))}
    assert pins <= names, pins - names
    assert {"antlr4-python3-runtime", "pyyaml", "aiohttp"} <= names  # dependencies too
    assert not [n for n in names if wheels.image_built(n)]
    for wheel in built.wheels:
        tags = wheel.removesuffix(".whl").split("-")[-3:]
        assert tags[0] in ("py3", "py2.py3", "cp313") or tags[1] == "abi3", wheel
        assert tags[2] == "any" or "manylinux" in tags[2], wheel
    reqs = (built.path / "requirements.txt").read_text()
    assert reqs.startswith("--no-index\n--find-links wheels\n")
    listing = json.loads((built.path / "bundle.json").read_text())["files"]
    assert {f"wheels/{w}" for w in built.wheels} <= set(listing)
    # cached: the same pins and image take no download the second time
    started = time.monotonic()
    again = bundle.build(ROOT, tmp_path / "bundle2", optional=set(), target=target)
    assert again.wheels == built.wheels and time.monotonic() - started < 30
    with pytest.raises(BincountError, match=r"pyyaml==6\.0\.1 has no wheel .*cp313.*native"):
        wheels.collect(["pyyaml==6.0.1"], target, tmp_path / "cache")


@pytest.mark.slow
@needs_pypi
def test_an_isolated_job_installs_from_its_bundle_with_no_index_and_trains(
    aws, tmp_path, tiny_source, monkeypatch
):
    """Acceptance: sagemaker.network_isolation=true -> an offline bundle (wheels for this
    harness's Python, 3.11: AWS's py311 image tag) -> AWS's sm_train.sh on a Python that has
    only torch, torchvision and pip (as the image), pip with no index reachable: it installs
    every other package from the bundle's wheels and trains."""
    sys.path.insert(0, str(Path(__file__).parent))
    import container_harness as harness
    from hydra import compose, initialize_config_dir

    from bincount.config import config_dir
    from bincount.sagemaker.launch.launcher import launch

    monkeypatch.setenv("BINCOUNT_CACHE_DIR", str(tmp_path / "cache"))
    import torch

    image = AWS_IMAGE.format(region="eu-west-1", tag=f"{torch.__version__.split('+')[0]}-cpu-py311")
    overrides = [
        "sagemaker.bucket=bincount-test",
        "sagemaker.instance_type=ml.m5.xlarge",
        "data.source=s3://bincount-test/abid",
        f"sagemaker.image_uri={image}",
        "++sagemaker.network_isolation=true",
        "experiment=smoke",
        "data.image_size=64",
        "data.max_per_split=8",
        "data.num_workers=0",
        "batch_size=4",
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("launch", overrides=overrides)
    said = []
    done = launch(cfg, overrides, tmp_path / "launch", echo=said.append)
    assert done.bundle.target == "cp311-manylinux_2_35_x86_64"
    assert any(s.startswith("offline bundle: ") for s in said), said
    assert not [w for w in done.bundle.wheels if w.startswith(("torch-", "torchvision-"))]
    [request] = aws.sagemaker("CreateTrainingJob")
    image_bin = harness.image_venv(tmp_path / "image")
    assert subprocess.run([image_bin / "python", "-c", "import pytorch_lightning"]).returncode != 0
    container = harness.training_job(
        request, tmp_path / "opt-ml", tiny_source, aws.env, bin_dir=image_bin
    )
    assert "HF_HUB_OFFLINE" not in container.env
    started = time.monotonic()
    code = container.run(timeout=900)
    log = container.output()
    assert code == 0, log[-5000:]
    assert "Running Basic Script driver" in log
    assert "Successfully installed" in log and "pytorch-lightning-2.6.6" in log, log[-3000:]
    assert "Looking in links: " in log and "/wheels" in log
    assert (container.root / "model" / "metrics.json").is_file()
    print(f"install + train in the container: {time.monotonic() - started:.0f} s")
