"""The wheels of an offline bundle: every package the job installs, for the image's Python.

A job in a VPC without NAT, or with network isolation, cannot reach PyPI: its bundle carries
the wheels and its requirements.txt starts with `--no-index --find-links wheels`.

`target_of(image_uri)` reads the Python and torch of AWS's image from its tag
(`pytorch-training:2.10.0-gpu-py313` -> CPython 3.13, torch 2.10.0, manylinux x86_64 up to the
glibc of its Ubuntu). `collect(pins, target)` runs `pip download --only-binary=:all:
--platform ... --python-version ... --implementation cp --abi ...` with this machine's pip
settings (index, mirrors) and caches the result under the user's cache dir, keyed by the pins
and the target. The image's own torch and torchvision are never bundled: pip resolves against
stand-ins of them (metadata-only wheels of the image's versions), so nothing of theirs, CUDA
libraries included, is downloaded. pip evaluates dependency markers for this machine's Python,
so the set is checked again for the target's (missing ones are added, extra ones dropped).
A pin with no wheel for the target: a pure-Python source distribution is built here into a
`py3-none-any` wheel; anything else stops the launch with the pin named.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bincount.errors import BincountError

# Never bundled: the image's torch build and what only it needs.
IMAGE_BUILT = ("torch", "torchvision", "torchaudio", "triton")
NATIVE_SOURCES = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".rs", ".f", ".f90", ".cu")
NATIVE_BUILDS = ("Cargo.toml", "meson.build", "CMakeLists.txt")
_IMAGE_TAG = re.compile(
    r":(?P<torch>\d+\.\d+(?:\.\d+)?)-(?:cpu|gpu)-py(?P<major>\d)(?P<minor>\d+)\b"
)
_UBUNTU = re.compile(r"-ubuntu(\d+\.\d+)\b")
# glibc of the Ubuntu releases AWS builds its images on (manylinux_2_<minor>).
UBUNTU_GLIBC = {"20.04": 31, "22.04": 35, "24.04": 39}
DEFAULT_GLIBC = 35  # PyTorch 2.x training images: Ubuntu 22.04 or later
CACHE_VERSION = 1


@dataclass(frozen=True)
class Target:
    python: str  # "3.13"
    torch: str  # the image's torch, e.g. "2.10.0"
    glibc_minor: int = DEFAULT_GLIBC
    machine: str = "x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def tag(self) -> str:
        return f"{self.abi}-manylinux_2_{self.glibc_minor}_{self.machine}"

    def platforms(self) -> list[str]:
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(self.glibc_minor, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]  # pip adds manylinux2010 and 1

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:"]
        for platform in self.platforms():
            args += ["--platform", platform]
        return [*args, "--python-version", self.python, "--implementation", "cp", "--abi", self.abi]

    def markers(self) -> dict[str, str]:
        """The environment markers of the image's Python (pip uses this machine's)."""
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "os_name": "posix",
        }


def target_of(image_uri: str) -> Target:
    """The Python, torch and platform of an AWS PyTorch image from its tag."""
    m = _IMAGE_TAG.search(image_uri)
    if not m:
        raise BincountError(
            f"cannot tell the Python of the image {image_uri} from its tag (AWS's look like "
            "pytorch-training:2.10.0-gpu-py313): use AWS's image (sagemaker.image_uri=null) or "
            "sagemaker.bundle.wheels=false and a VPC route to your package index"
        )
    ubuntu = _UBUNTU.search(image_uri)
    glibc = UBUNTU_GLIBC.get(ubuntu[1] if ubuntu else "", DEFAULT_GLIBC)
    return Target(python=f"{m['major']}.{m['minor']}", torch=m["torch"], glibc_minor=glibc)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_built(name: str) -> bool:
    return canonical(name) in IMAGE_BUILT or canonical(name).startswith("nvidia-")


def torchvision_of(torch: str) -> str:
    """The torchvision released with a torch 2.x (0.15 with 2.0, 0.25 with 2.10)."""
    major, minor, *patch = (int(p) for p in torch.split("."))
    return f"0.{minor + 15}.{patch[0] if patch else 0}" if major == 2 else "0"


def _stub(folder: Path, name: str, version: str) -> None:
    """A metadata-only wheel: pip resolves against it as the image's own package."""
    dist = f"{name}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    wheel = "Wheel-Version: 1.0\nGenerator: bincount\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}.dist-info/METADATA", meta)
        z.writestr(f"{dist}.dist-info/WHEEL", wheel)
        z.writestr(f"{dist}.dist-info/RECORD", "")


def _requires(wheel: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(name).decode("utf-8", "replace"))
    return canonical(meta["Name"]), meta.get_all("Requires-Dist") or []


def closure(roots: list[str], requires: dict[str, list[str]], markers: dict) -> set[str]:
    """The packages `roots` need on the target (its markers), stopping at the image's own:
    those in `requires` (name -> Requires-Dist) and those missing from it."""
    from packaging.requirements import Requirement

    expanded: dict[str, set[str]] = {}
    todo = [(Requirement(r), {""}) for r in roots]
    while todo:
        req, parent_extras = todo.pop()
        if req.marker is not None and not any(
            req.marker.evaluate({**markers, "extra": e}) for e in parent_extras
        ):
            continue
        name = canonical(req.name)
        if image_built(name):
            continue
        extras = {"", *req.extras}
        if name in expanded and extras <= expanded[name]:
            continue
        expanded.setdefault(name, set()).update(extras)
        for dep in requires.get(name, []):
            todo.append((Requirement(dep), extras))
    return set(expanded)


def _pip(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        return subprocess.run(
            [sys.executable, "-m", "pip", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BincountError(
            f"pip {args[0]} took over {timeout:.0f} s ({' '.join(args[-1:])}): check that this "
            "machine reaches your package index, or sagemaker.bundle.wheels=false"
        ) from None


def _last_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
    return (lines[-1] if lines else proc.stderr.strip()[-300:]).removeprefix("ERROR: ")


def build_pure(spec: str, target: Target, dest: Path, work: Path) -> Path:
    """A `py3-none-any` wheel of a pin that has only a source distribution, built here; a
    source that compiles native code cannot be built for another platform: refused."""
    sdists = work / "sdists"
    name = re.split(r"[=<>!~\[; ]", spec, maxsplit=1)[0]
    # only this package from source, its metadata read without installing its build
    # requirements (--no-binary=:all: would compile those too, e.g. Cython)
    fetch = ["download", "--no-deps", "--no-binary", name, "--no-build-isolation"]
    got = _pip([*fetch, "-d", str(sdists), spec], work, timeout=300)
    if got.returncode:
        raise BincountError(
            f"{spec} has no wheel for the image's Python ({target.tag}) and no source to build "
            f"one ({_last_error(got)}): pin a version that has one"
        )
    [sdist] = sorted(sdists.iterdir(), key=lambda p: p.stat().st_mtime)[-1:]
    if sdist.suffix == ".zip":
        with zipfile.ZipFile(sdist) as z:
            members = z.namelist()
    else:
        with tarfile.open(sdist) as t:
            members = t.getnames()
    native = [m for m in members if m.endswith(NATIVE_SOURCES) or Path(m).name in NATIVE_BUILDS]
    if native:
        raise BincountError(
            f"{spec} has no wheel for the image's Python ({target.tag}) and its source "
            f"compiles native code ({Path(native[0]).name}): pin a version with a {target.tag} "
            "wheel, or sagemaker.bundle.wheels=false where the job can reach an index"
        )
    built = _pip(["wheel", "--no-deps", "-w", str(dest), str(sdist)], work)
    wheels = [p for p in dest.glob("*.whl") if canonical(p.name.split("-")[0]) in canonical(spec)]
    if built.returncode or not wheels:
        raise BincountError(f"could not build a wheel of {spec}: {_last_error(built)}")
    for wheel in wheels:
        if not wheel.name.endswith("-none-any.whl"):
            raise BincountError(
                f"{spec} built into {wheel.name}, not a pure-Python wheel: pin a version with a "
                f"{target.tag} wheel"
            )
    return wheels[0]


_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


def _download(pins: list[str], target: Target, work: Path, log) -> list[Path]:
    stubs, built, out = work / "stubs", work / "built", work / "download"
    for folder in (stubs, built, out):
        folder.mkdir()
    vision = torchvision_of(target.torch)
    _stub(stubs, "torch", f"{target.torch}+image")
    _stub(stubs, "torchvision", f"{vision}+image")
    (work / "constraints.txt").write_text(f"torch=={target.torch}+image\n")
    roots, extra = [p for p in pins if not image_built(re.split(r"[=<>!~\[; ]", p)[0])], []
    for _ in range(8):
        (work / "requirements.txt").write_text("\n".join([*roots, *extra]) + "\n")
        args = ["download", "-d", str(out), *target.pip_args()]
        args += ["--find-links", str(stubs), "--find-links", str(built)]
        args += ["-r", "requirements.txt", "-c", "constraints.txt"]
        proc = _pip(args, work)
        if proc.returncode:
            missing = _NO_MATCH.search(proc.stderr)
            if not missing:
                raise BincountError(
                    f"pip could not resolve the job's requirements for {target.tag}: "
                    f"{_last_error(proc)} (check that this machine reaches your package index)"
                )
            log(f"no {target.tag} wheel of {missing[1]}: building a pure-Python one here")
            build_pure(missing[1], target, built, work)
            continue
        wheels = {}
        requires = {}
        for path in out.glob("*.whl"):
            name, deps = _requires(path)
            wheels[name], requires[name] = path, deps
        need = closure([*roots, *extra], requires, target.markers())
        absent = sorted(need - set(wheels))
        if not absent:
            return sorted(wheels[n] for n in need)
        extra += absent  # needed on the target's Python, skipped by pip's markers here
    raise BincountError(f"the wheels for {target.tag} did not settle: {', '.join(extra)}")


def cache_key(pins: list[str], target: Target) -> str:
    text = json.dumps({"v": CACHE_VERSION, "pins": sorted(pins), "target": asdict(target)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def collect(pins: list[str], target: Target, cache: Path, log=lambda s: None) -> list[Path]:
    """The wheels for `pins` (requirement lines) on `target`: from the cache, else downloaded
    with pip into it (<cache>/wheels/<target tag>-<key of pins and target>/)."""
    folder = Path(cache) / "wheels" / f"{target.tag}-{cache_key(pins, target)}"
    listing = folder / "wheels.json"
    if listing.is_file():
        names = json.loads(listing.read_text())["wheels"]
        if all((folder / n).is_file() for n in names):
            return [folder / n for n in names]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".tmp-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        wheels = _download(pins, target, work, log)
        staged = work / "staged"
        staged.mkdir()
        for wheel in wheels:
            shutil.move(wheel, staged / wheel.name)
        (staged / "wheels.json").write_text(
            json.dumps(
                {
                    "target": asdict(target),
                    "pins": pins,
                    "wheels": [w.name for w in wheels],
                    "downloaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seconds": round(time.monotonic() - started, 1),
                },
                indent=1,
            )
        )
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    return [folder / w.name for w in wheels]
