"""Input pipeline against the training step: does the loader keep up with the default model?

    .venv/bin/python benchmarks/bench_pipeline.py [--images 160] [--batches 6] [--steps 3]
        [--workers 2] [--json OUT]

On the training split of ../shared/abid (the default data config, EfficientNet-Lite0 at 224 px,
batch 32), in one process, one after the other:

- decode only (one core): full JPEG decode, PIL draft decode (`transforms.open_rgb`), and a
  read from the resized-image cache (`bincount cache images`, built here if missing);
- decode + the training transform (letterbox, flips, colour jitter, to tensor, normalise);
- loader only: the DataModule's train DataLoader (--workers processes, batch 32), draft decode
  and resized cache, images/s over --batches batches after the first;
- train step only: the default model's forward, backward and optimizer step (AdamW, channels
  last) on batches already in memory.

The ratio the issue asks for is loader / train step (target: at least 2x). On 2 cores the
loader's workers and the training step compete for the same cores during training; here each
is measured alone.
"""

from __future__ import annotations

import argparse
import itertools
import time

from report import ROOT, Timer, emit, fmt, ratio


def default_datamodule(resized_cache: bool, workers: int, batch_size: int = 32):
    from bincount.data.datamodule import BinDataModule

    dm = BinDataModule(
        str(ROOT.parent / "shared" / "abid"),
        str(ROOT / "data"),
        batch_size=batch_size,
        num_workers=workers,
        network={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},  # tf_efficientnet_lite0's
        resized_cache=resized_cache,
    )
    dm.prepare_data()
    dm.setup()
    return dm


def per_second(n: int, fn) -> float:
    with Timer() as t:
        for i in range(n):
            fn(i)
    return n / t.seconds


def decode_rows(dm, n: int) -> list[dict]:
    import torch
    from PIL import Image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        return _decode_rows(dm, n, Image)
    finally:
        torch.set_num_threads(threads)


def _decode_rows(dm, n: int, Image) -> list[dict]:
    from bincount.data import layout, transforms

    ds = dm.datasets["train"]
    paths = [layout.image_path(ds.folder, i) for i in ds.ids[:n]]
    ids = ds.ids[:n]
    size = ds.size
    tf = ds.transform
    full = per_second(n, lambda i: Image.open(paths[i]).convert("RGB"))
    draft = per_second(n, lambda i: transforms.open_rgb(paths[i], size))
    cache = dm.cache
    cached = per_second(n, lambda i: cache.image(ids[i]).load())
    draft_tf = per_second(n, lambda i: tf(transforms.open_rgb(paths[i], size)))
    cached_tf = per_second(n, lambda i: tf(cache.image(ids[i])))
    rows = [
        ("decode, full size", full),
        ("decode, PIL draft", draft),
        ("read resized cache", cached),
        ("draft decode + train transform", draft_tf),
        ("resized cache + train transform", cached_tf),
    ]
    return [
        {"stage": name, "images/s": fmt(v), "vs full decode": ratio(v, full), "_ips": v}
        for name, v in rows
    ]


def loader_ips(dm, batches: int) -> float:
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # workers start and fill their prefetch queue
    n = 0
    with Timer() as t:
        for x, _ in itertools.islice(it, batches):
            n += len(x)
    del it
    return n / t.seconds


def train_step_ips(batch, steps: int) -> float:
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from bincount.models.module import CountModule
    from bincount.models.network import CountNet

    torch.set_float32_matmul_precision("high")
    optimizer = instantiate(
        OmegaConf.create({"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3})
    )
    # the default model: pretrained, channels last
    module = CountModule(CountNet(), optimizer=optimizer)
    module.train()
    opt = module.optimizer_factory(module.parameters())
    x, y = batch

    def step(i):
        loss = module.training_step((x, y), i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(0)  # warm-up (oneDNN picks its kernels)
    return per_second(steps, step) * len(x)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=160)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    plain = default_datamodule(False, args.workers)
    cached = default_datamodule(True, args.workers)
    decode = decode_rows(cached, args.images)
    loader_draft = loader_ips(plain, args.batches)
    loader_cached = loader_ips(cached, args.batches)
    batch = next(iter(default_datamodule(True, 0).train_dataloader()))
    start = time.perf_counter()
    step = train_step_ips(batch, args.steps)
    step_seconds = time.perf_counter() - start
    for row in decode:
        row.pop("_ips")
    throughput = [
        {"stage": f"loader, draft decode ({args.workers} workers)", "images/s": fmt(loader_draft)},
        {
            "stage": f"loader, resized cache ({args.workers} workers)",
            "images/s": fmt(loader_cached),
        },
        {"stage": "train step (EfficientNet-Lite0, 224 px, batch 32)", "images/s": fmt(step)},
        {"stage": "loader (draft) / train step", "images/s": ratio(loader_draft, step)},
        {"stage": "loader (cache) / train step", "images/s": ratio(loader_cached, step)},
    ]
    met = min(loader_draft, loader_cached) / step >= 2
    sections = [
        {
            "title": "Input pipeline: decode (one core, train split)",
            "command": "benchmarks/bench_pipeline.py",
            "columns": ["stage", "images/s", "vs full decode"],
            "rows": decode,
            "notes": [
                f"{args.images} training images of ../shared/abid, one after the other, one "
                "thread (as in a loader worker)"
            ],
        },
        {
            "title": "Input pipeline: loader vs training step",
            "command": "benchmarks/bench_pipeline.py",
            "columns": ["stage", "images/s"],
            "rows": throughput,
            "notes": [
                f"loader: {args.batches} batches of 32 after the first; train step: "
                f"{args.steps} steps after a warm-up ({step_seconds:.0f} s in all)",
                "target loader >= 2x train step: " + ("met" if met else "NOT met"),
            ],
        },
    ]
    emit(sections, args.json)
    return sections


if __name__ == "__main__":
    main()
