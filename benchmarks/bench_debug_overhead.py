"""What debug=health and debug=profile cost: the same small real training with and without them.

    .venv/bin/python benchmarks/bench_debug_overhead.py [--image-size 128] [--images 64]
        [--repeat 2] [--source ../shared/abid]

Trains the default model (EfficientNet-Lite0, offline pretrained weights) for one epoch on
--images real training images through `bincount.training.runner.train`, with no debug config, with
debug=health, debug=profile and debug=[health,profile], and prints each one's fit time (best
of --repeat) and its ratio to the plain run. The runs go to a temporary folder. On a shared
machine the ratios are noisy: repeat, and compare them rather than the seconds.

    .venv/bin/python benchmarks/bench_debug_overhead.py --grad-stats

only times what debug=health adds to every optimizer step (the per-layer gradient norms of
EfficientNet-Lite0's 3.4 M parameters), per call, against one AdamW step on them (plain and
fused).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {
    "plain": [],
    "health": ["debug=health"],
    "profile": ["debug=profile"],
    "health+profile": ["debug=[health,profile]"],
}


def fit_seconds(overrides: list[str], tmp: Path) -> float:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from bincount.config import config_dir
    from bincount.training.runner import train

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run = Path(tempfile.mkdtemp(dir=tmp))
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
    train(cfg)
    return json.loads((run / "metrics.json").read_text())["fit_seconds"]


def grad_stats(repeat: int = 20) -> None:
    import time

    import torch

    from bincount.callbacks.health import TrainingHealth, _layer_groups
    from bincount.models.module import CountModule
    from bincount.models.network import CountNet

    module = CountModule(CountNet(pretrained=False))
    for p in module.parameters():
        p.grad = torch.randn_like(p)
    cb = TrainingHealth()
    cb._groups = _layer_groups(module)

    class Trainer:
        global_step = 0

    def per_call(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - start) / repeat * 1000

    stats = per_call(lambda: cb.on_before_optimizer_step(Trainer, module, None))
    adamw = torch.optim.AdamW(module.parameters(), lr=1e-6)
    step = per_call(adamw.step)
    print(f"per-layer gradient norms ({len(cb._groups)} layers): {stats:.1f} ms a step")
    fused = per_call(torch.optim.AdamW(module.parameters(), lr=1e-6, fused=True).step)
    print(f"one AdamW step on the same parameters (for scale): {step:.1f} ms  x{stats / step:.2f}")
    print(
        f"one fused AdamW step (+optimizer.fused=true): {fused:.1f} ms  x{step / fused:.1f} faster"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--source", default=str(ROOT.parent / "shared" / "abid"))
    ap.add_argument("--grad-stats", action="store_true", help="only time the gradient norms")
    args = ap.parse_args()
    if args.grad_stats:
        grad_stats()
        return
    with tempfile.TemporaryDirectory(prefix="bench-debug-") as tmp:
        base = [
            "experiment=smoke",
            f"data.source={args.source}",
            f"data.image_size={args.image_size}",
            f"data.max_per_split={args.images}",
            f"paths.data_dir={tmp}/data",
            "data.num_workers=0",
            "+trainer.limit_val_batches=1",
            "trainer.enable_progress_bar=false",
            "test=false",
        ]
        fit_seconds(base, Path(tmp))  # warm-up: manifest, caches
        best = {}
        for name, extra in VARIANTS.items():
            best[name] = min(fit_seconds(base + extra, Path(tmp)) for _ in range(args.repeat))
    print(f"\n{args.images} images at {args.image_size} px, one epoch, best of {args.repeat}")
    for name, seconds in best.items():
        print(f"{name:>15}: {seconds:6.1f} s  x{seconds / best['plain']:.2f}")


if __name__ == "__main__":
    main()
