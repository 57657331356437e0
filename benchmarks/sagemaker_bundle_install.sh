#!/bin/bash
# How long a SageMaker job spends installing the bundle's requirements, before and after the
# bundle kept only what training imports. As in AWS's training image, torch/torchvision are
# already there: a venv gets them first (not timed), then each requirements file is installed,
# timed, into its own copy of that venv. Usage: benchmarks/sagemaker_bundle_install.sh [WORKDIR]
# (several GB of disk; pip's cache and index settings as configured on the machine).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
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
