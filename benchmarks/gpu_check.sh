#!/usr/bin/env bash
# GPU readiness: one epoch of the default recipe on a CUDA GPU, in bf16 (trainer.precision=auto)
# and in fp32, then DDP over every local GPU (trainer=ddp, one process per GPU): images/s,
# peak GPU memory and the epoch's time of each, from the runs' profile.json (debug=profile).
#
#   benchmarks/gpu_check.sh [DATA_SOURCE] [extra Hydra overrides...]
#   benchmarks/gpu_check.sh ../shared/abid batch_size=64
#
# Runs go to ${GPU_CHECK_OUT:-outputs/gpu_check}/{bf16,fp32,ddp}; the table is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${1:-../shared/abid}
shift || true
OUT=${GPU_CHECK_OUT:-outputs/gpu_check}
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -lt 1 ]; then
  echo "gpu_check: no CUDA GPU visible (torch.cuda.device_count() is 0): run it on a GPU machine" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
common=(data.source="$DATA" trainer.max_epochs=1 debug=profile test=false)
$PY train.py "${common[@]}" trainer=gpu hydra.run.dir="$OUT/bf16" "$@"
$PY train.py "${common[@]}" trainer=gpu trainer.precision=32-true hydra.run.dir="$OUT/fp32" "$@"
$PY train.py "${common[@]}" trainer=ddp trainer.accelerator=gpu hydra.run.dir="$OUT/ddp" "$@"
$PY - "$OUT" "$NGPU" <<'PYEOF'
import json, sys
from pathlib import Path

out, ngpu = Path(sys.argv[1]), int(sys.argv[2])
print(f"\n| run | GPUs | precision | train images/s | val images/s | peak GPU MB | fit s | val/acc |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name in ("bf16", "fp32", "ddp"):
    prof = json.loads((out / name / "profile.json").read_text())
    metrics = json.loads((out / name / "metrics.json").read_text())
    prec = metrics.get("precision", "?")
    t = prof["throughput"]
    print(f"| {name} | {ngpu if name == 'ddp' else 1} | {prec} | {t['train_images_per_s']} | "
          f"{t.get('val_images_per_s')} | {prof['memory'].get('gpu_peak_mb')} | "
          f"{metrics['fit_seconds']} | {metrics['val'].get('val/acc', float('nan')):.3f} |")
PYEOF
