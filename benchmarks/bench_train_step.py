"""The training step of the default model on a CPU: which settings win, and what Lightning costs.

    .venv/bin/python benchmarks/bench_train_step.py [--steps 3] [--loop-steps 6] [--rounds 2]
        [--compile] [--json OUT]

EfficientNet-Lite0 (offline ImageNet weights), 224 px, batch 32, real images of the training
split (the resized cache), all in memory. Each step is the module's `training_step`, backward
and an AdamW step.

Settings (one warm-up step, then --steps steps each, on the same batch; ratio to the default):
contiguous tensors vs channels_last (the default), fused AdamW and `model.frozen_stages=2`
(the stem and the first two stages frozen: no backward pass through them); with --bf16 bf16
autocast and with --compile `torch.compile` (its compile time apart): both off by default,
they take minutes here (no bf16 instructions on this CPU; compiling takes ~3 minutes on 2
cores).

Threads (each in its own process: OpenMP reads them at start): 2 threads with
OMP_WAIT_POLICY=PASSIVE (what `import bincount` sets), with ACTIVE (OpenMP's default), and
1 thread.

Loop (--loop-steps batches, --rounds rounds alternating): `trainer.fit` with the project's
trainer, callbacks and CSV logger (validation and checkpoint writing off) against a bare
PyTorch loop doing the same `training_step`/backward/AdamW on the same batches. Compared by
the median time per step after the first (the loop's own cost), and by the whole fit.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import time

from report import ROOT, emit, fmt, ratio


def batches(n: int, batch_size: int = 32) -> list:
    from bench_pipeline import default_datamodule

    loader = default_datamodule(True, 0, batch_size).train_dataloader()
    out = []
    for x, y in loader:
        out.append((x, y))
        if len(out) == n:
            return out
    raise SystemExit(f"only {len(out)} batches in the training split")


def new_module(
    channels_last: bool = True, fused: bool = False, scheduler=None, frozen_stages: int = 0
):
    import functools

    import torch

    from bincount.models.module import CountModule
    from bincount.models.network import CountNet

    optimizer = functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01)
    if fused:
        optimizer = functools.partial(optimizer, fused=True)
    return CountModule(
        CountNet(channels_last=channels_last),
        optimizer=optimizer,
        scheduler=scheduler,
        label_smoothing=0.1,
        frozen_stages=frozen_stages,
    )


def step_seconds(module, batch, steps: int, autocast=None, fn=None) -> list[float]:
    import torch

    module.train()
    opt = module.optimizer_factory([p for p in module.parameters() if p.requires_grad])
    run = fn or module.training_step
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            loss = run(batch, i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[1:]  # the first is the warm-up


def settings_rows(batch, steps: int, compile_: bool, bf16: bool) -> tuple[list[dict], list[str]]:
    import torch

    n = len(batch[0])
    threads = torch.get_num_threads()
    results: dict[str, float] = {}
    notes = []

    def measure(name, module, **kw):
        results[name] = statistics.median(step_seconds(module, batch, steps, **kw))

    measure("channels_last, fp32 (default)", new_module())
    measure("contiguous, fp32", new_module(channels_last=False))
    measure("channels_last, fused AdamW", new_module(fused=True))
    measure("channels_last, model.frozen_stages=2", new_module(frozen_stages=2))
    if bf16:
        measure("channels_last, bf16 autocast", new_module(), autocast=True)
    if compile_:
        module = new_module()
        module.net = torch.compile(module.net)
        start = time.perf_counter()
        step_seconds(module, batch, 0)
        notes.append(
            f"torch.compile: the first step (compiling) took {time.perf_counter() - start:.0f} s"
        )
        measure("channels_last, torch.compile", module)
    base = results["channels_last, fp32 (default)"]
    rows = [
        {
            "setting": name,
            "s/step": f"{s:.2f}",
            "images/s": fmt(n / s),
            "speed vs default": ratio(base, s),
        }
        for name, s in results.items()
    ]
    if bf16:  # correct enough? The loss of the same weights on the same batch, both ways.
        module = new_module().eval()
        with torch.no_grad():
            fp32 = module.training_step(batch, 0).item()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = module.training_step(batch, 0).item()
        notes.append(f"loss of one batch, same weights: fp32 {fp32:.4f}, bf16 autocast {low:.4f}")
    notes.append(
        f"{threads} threads (torch.get_num_threads()), OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')} (bincount sets PASSIVE unless set)"
    )
    return rows, notes


THREAD_SETTINGS = {
    "2 threads, OMP_WAIT_POLICY=PASSIVE (bincount's default)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, OMP_WAIT_POLICY=ACTIVE (OpenMP's default)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
}


def thread_rows(steps: int, rounds: int) -> tuple[list[dict], list[str]]:
    """Each thread setting in its own process (OpenMP reads them at start), alternating."""
    from report import child

    seconds: dict[str, list[float]] = {name: [] for name in THREAD_SETTINGS}
    for _ in range(rounds):
        for name, env in THREAD_SETTINGS.items():
            out = child("bench_train_step.py", ["--child-steps", str(steps)], env)
            seconds[name].append(out["median_s"])
    base = min(seconds[next(iter(THREAD_SETTINGS))])
    rows = [
        {
            "setting": name,
            "s/step": f"{min(v):.2f}",
            "images/s": fmt(32 / min(v)),
            "speed vs default": ratio(base, min(v)),
        }
        for name, v in seconds.items()
    ]
    notes = [
        f"each in its own process, {steps} steps after a warm-up, best of {rounds} alternating "
        "rounds: "
        + "; ".join(
            f"{k.split(' (')[0]}: " + ", ".join(f"{s:.2f}" for s in v) for k, v in seconds.items()
        ),
    ]
    return rows, notes


def child_steps(steps: int) -> None:
    """--child-steps: the default step's median seconds, as one JSON line."""
    import json

    batch = batches(1)[0]
    median = statistics.median(step_seconds(new_module(), batch, steps))
    print(json.dumps({"median_s": median}))


class StepClock:
    """A Lightning callback noting when each training batch starts (and the last one ends)."""

    def __init__(self):
        import pytorch_lightning as pl

        clock = self

        class _CB(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, i):
                clock.marks.append(time.perf_counter())

            def on_train_batch_end(self, trainer, module, outputs, batch, i):
                clock.end = time.perf_counter()

        self.marks: list[float] = []
        self.end = 0.0
        self.callback = _CB()

    def steps(self) -> list[float]:
        marks = [*self.marks, self.end]
        return [b - a for a, b in itertools.pairwise(marks)]


def lightning_fit(data: list, tmp: str) -> tuple[list[float], float]:
    from hydra import compose, initialize_config_dir
    from torch.utils.data import DataLoader

    from bincount.config import config_dir
    from bincount.config.hydra import instantiate, instantiate_dict
    from bincount.training.fit import quiet_lightning

    quiet_lightning()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp}", "hydra.run.dir=."])
    clock = StepClock()
    callbacks = [*instantiate_dict(cfg.callbacks), clock.callback]
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=instantiate_dict(cfg.logger),
        default_root_dir=tmp,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        max_epochs=1,
    )
    module = new_module()
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    return clock.steps()[1:], time.perf_counter() - start


def bare_fit(data: list) -> tuple[list[float], float]:
    from torch.utils.data import DataLoader

    start = time.perf_counter()
    module = new_module()
    module.train()
    opt = module.optimizer_factory([p for p in module.parameters() if p.requires_grad])
    marks = []
    for i, batch in enumerate(DataLoader(data, batch_size=None)):
        marks.append(time.perf_counter())
        loss = module.training_step(batch, i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    marks.append(time.perf_counter())
    steps = [b - a for a, b in itertools.pairwise(marks)]
    return steps[1:], time.perf_counter() - start


def loop_rows(data: list, rounds: int) -> tuple[list[dict], list[str]]:
    import tempfile
    import warnings

    warnings.filterwarnings("ignore", message=".*self.log.*")
    bare, light = [], []
    bare_total, light_total = [], []
    for _ in range(rounds):
        steps, total = bare_fit(data)
        bare.append(statistics.median(steps))
        bare_total.append(total)
        with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as tmp:
            steps, total = lightning_fit(data, tmp)
        light.append(statistics.median(steps))
        light_total.append(total)
    b, lt = min(bare), min(light)
    bt, ltt = min(bare_total), min(light_total)
    rows = [
        {"loop": "bare PyTorch", "median s/step": f"{b:.2f}", "whole fit s": f"{bt:.1f}"},
        {
            "loop": "Lightning (project trainer)",
            "median s/step": f"{lt:.2f}",
            "whole fit s": f"{ltt:.1f}",
        },
        {
            "loop": "Lightning / bare",
            "median s/step": f"{lt / b:.3f}",
            "whole fit s": f"{ltt / bt:.3f}",
        },
    ]
    notes = [
        f"{len(data)} batches of 32 (224 px) in memory, best of {rounds} alternating rounds; "
        "per-round medians: bare "
        + ", ".join(f"{v:.2f}" for v in bare)
        + "; Lightning "
        + ", ".join(f"{v:.2f}" for v in light),
        "whole fit includes building the model and, for Lightning, its setup and teardown",
        "target Lightning within 10% of bare (per step): "
        + ("met" if lt / b <= 1.10 else f"NOT met ({(lt / b - 1) * 100:.0f}% slower)"),
    ]
    return rows, notes


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--loop-steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes)")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast (slow here)")
    p.add_argument("--skip-settings", action="store_true")
    p.add_argument("--skip-loop", action="store_true")
    p.add_argument("--skip-threads", action="store_true")
    p.add_argument("--thread-rounds", type=int, default=1)
    p.add_argument("--child-steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_float32_matmul_precision("high")
    if args.child_steps:
        child_steps(args.child_steps)
        return []
    (ROOT / "outputs").mkdir(exist_ok=True)
    data = batches(max(args.loop_steps, 1))
    sections = []
    if not args.skip_settings:
        rows, notes = settings_rows(data[0], args.steps, args.compile, args.bf16)
        sections.append(
            {
                "title": "Training step settings (EfficientNet-Lite0, 224 px, batch 32)",
                "command": "benchmarks/bench_train_step.py"
                + (" --compile" if args.compile else ""),
                "columns": ["setting", "s/step", "images/s", "speed vs default"],
                "rows": rows,
                "notes": [f"median of {args.steps} steps after a warm-up, same batch", *notes],
            }
        )
    if not args.skip_threads:
        rows, notes = thread_rows(args.steps, args.thread_rounds)
        sections.append(
            {
                "title": "Training step: CPU threads (EfficientNet-Lite0, 224 px, batch 32)",
                "command": "benchmarks/bench_train_step.py",
                "columns": ["setting", "s/step", "images/s", "speed vs default"],
                "rows": rows,
                "notes": notes,
            }
        )
    if not args.skip_loop:
        rows, notes = loop_rows(data, args.rounds)
        sections.append(
            {
                "title": "Lightning training loop vs a bare PyTorch loop",
                "command": "benchmarks/bench_train_step.py",
                "columns": ["loop", "median s/step", "whole fit s"],
                "rows": rows,
                "notes": notes,
            }
        )
    emit(sections, args.json)
    return sections


if __name__ == "__main__":
    main()
