#!/bin/bash
# How long a SageMaker job spends installing the bundle's requirements, before and after the
# bundle kept only what training imports. As in AWS's training image, torch/torchvision are
# already there: a venv gets them first (not timed), then each requirements file is installed,
# timed, into its own copy of that venv. Usage: benchmarks/sagemaker_bundle_install.sh [WORKDIR]
# (several GB of disk; pip's cache and index settings as configured on the machine).
#
# benchmarks/sagemaker_bundle_install.sh --offline [WORKDIR]: the offline bundle
# (sagemaker.bundle.wheels=true): its size and resolve time (cold and cached) for AWS's
# pytorch-training:2.10.0-gpu-py313 and for this machine's Python, then the install time of
# the latter's wheels with no index reachable, on a Python that has only torch, torchvision and
# pip (tests/sagemaker/container_harness.py's image_venv, as AWS's image). Needs PyPI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
if [ "${1:-}" = "--offline" ]; then
  WORK=${2:-$(mktemp -d)}
  mkdir -p "$WORK"
  export BINCOUNT_CACHE_DIR="$WORK/cache" PYTHONPATH="$ROOT/src:$ROOT/tests/sagemaker"
  exec "$PY" - "$ROOT" "$WORK" <<'PYEOF'
import os, subprocess, sys, time
from pathlib import Path
import torch
import container_harness as harness
from bincount.sagemaker import bundle, wheels
root, work = Path(sys.argv[1]), Path(sys.argv[2])
py = f"py{sys.version_info.major}{sys.version_info.minor}"
images = {
    "aws": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313",
    "here": f"x.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:{torch.__version__.split('+')[0]}-cpu-{py}",
}
built = {}
for name, image in images.items():
    target = wheels.target_of(image)
    for run in ("cold", "cached"):
        start = time.monotonic()
        b = bundle.build(root, work / f"bundle-{name}", optional=set(), target=target)
        took = time.monotonic() - start
        print(f"{target.tag} ({run}): {len(b.wheels)} wheels, {b.wheel_bytes() / 1e6:.1f} MB, "
              f"bundle built in {took:.1f} s")
    built[name] = b
image_bin = harness.image_venv(work / "image")
def du(path):
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout.split()[0])
before = du(work / "image" / "image-venv")
env = harness._base_env(work, {}, "bench", {}, image_bin)
start = time.monotonic()
proc = subprocess.run([str(image_bin / "python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
                      cwd=built["here"].path, env=env, capture_output=True, text=True)
took = time.monotonic() - start
assert proc.returncode == 0, proc.stderr[-2000:]
check = subprocess.run([str(image_bin / "python"), "-c", "import pytorch_lightning, timm, hydra"], env=env)
print(f"install with no index ({built['here'].target}, {len(built['here'].wheels)} wheels): "
      f"{took:.1f} s, +{du(work / 'image' / 'image-venv') - before} MB in the image's venv, "
      f"imports {'ok' if check.returncode == 0 else 'FAILED'}")
PYEOF
fi
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK" && cd "$WORK"
"$PY" - "$ROOT" <<'PYEOF'
import sys
from pathlib import Path
from bincount.sagemaker import bundle
root = Path(sys.argv[1])
Path("after.txt").write_text(bundle.requirements(root, True, set()))  # a csv-logger job
pins = [l for l in (root / "requirements.txt").read_text().splitlines()
        if l.strip() and not l.startswith("#")
        and bundle.requirement_name(l) not in bundle.IMAGE_PACKAGES]
Path("before.txt").write_text("\n".join(pins) + "\n")  # requirements.txt minus torch/vision
PYEOF
TORCH=$(grep -E '^(torch|torchvision)==' "$ROOT/requirements.txt" | tr '\n' ' ')
rm -rf base && "$PY" -m venv base && base/bin/pip install -q $TORCH 2>>pip.log
for which in before after; do
  rm -rf "t-$which" && cp -a base "t-$which"
  start=$(date +%s.%N)
  "t-$which/bin/python" -m pip install -q -r "$which.txt" 2>>pip.log
  end=$(date +%s.%N)
  n=$("t-$which/bin/python" -m pip list 2>/dev/null | tail -n +3 | wc -l)
  added=$(( $(du -sm "t-$which" | cut -f1) - $(du -sm base | cut -f1) ))
  echo "$which: $(grep -c '^[^#].*==' "$which.txt") pins, $(echo "$end - $start" | bc) s, $n packages in the venv, +${added} MB"
  rm -rf "t-$which"
done
rm -rf base
