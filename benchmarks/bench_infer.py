"""Inference of the default model on a CPU: one-image latency and batch throughput, PyTorch
eager against ONNX Runtime; and the server's peak memory.

    .venv/bin/python benchmarks/bench_infer.py [--images 40] [--batch 32] [--reps 3]
        [--requests 20] [--json OUT]

The model is the default one (EfficientNet-Lite0, 224 px, classify head) with its ImageNet
backbone and an untrained head: latency does not depend on the weights' values. It is saved
as a checkpoint in a temporary run folder and exported with `bincount.export` (as `bincount
export` does), then loaded with `inference.model_fn` for each backend, as the server does.

- one image, model only: a preprocessed (1, 3, 224, 224) tensor through the network;
- one image, end to end: `input_fn` + `predict_fn` on the JPEG bytes (decode, letterbox,
  normalise, network, probabilities, JSON-ready answer), what a request costs minus HTTP;
- p50 and p99 over --images real photos (after 3 warm-up calls), then batch throughput: a
  batch of --batch preprocessed images, best of --reps.
- server memory: `bincount serve RUN` (PyTorch backend) in its own process, --requests
  requests, then its peak RSS (VmHWM).

The target is p50 under 25 ms for one image on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from report import ROOT, emit, fmt, ratio

ABID = ROOT.parent / "shared" / "abid"


def make_run(tmp: Path) -> Path:
    from bincount import preprocess
    from bincount.config.hydra import instantiate
    from bincount.training.head_only import save_checkpoint

    cfg = _cfg()
    module = instantiate(cfg.model).eval()
    spec = preprocess.resolve(module.net.data_config, cfg.data.image_size, cfg.data.resize)
    module.use_data(spec)  # as the data module gives it in training
    ckpt = tmp / "run" / "checkpoints" / "best.ckpt"
    save_checkpoint(module, ckpt)
    return tmp / "run"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latencies(fn, items: list, warmup: int = 3) -> list[float]:
    for item in items[:warmup]:
        fn(item)
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def backend_rows(model, name: str, photos: list[bytes], batch: int, reps: int) -> list[dict]:
    import torch

    from bincount import inference

    tensors = [
        model.transform(inference.decode_image(b, model.preprocess["image_size"]))[None]
        for b in photos
    ]
    model_only = latencies(model.logits, tensors)
    end_to_end = latencies(
        lambda b: inference.predict_fn(inference.input_fn(b, "image/jpeg"), model), photos
    )
    x = torch.cat((tensors * (batch // len(tensors) + 1))[:batch])
    model.logits(x)  # warm-up at this batch size
    best = min(_seconds(model.logits, x) for _ in range(reps))
    rows = []
    for what, ms in (("one image, model only", model_only), ("one image, end to end", end_to_end)):
        rows.append(
            {
                "backend": name,
                "measure": what,
                "p50 ms": f"{statistics.median(ms):.1f}",
                "p99 ms": f"{percentile(ms, 99):.1f}",
                "images/s": fmt(1000 / statistics.median(ms)),
            }
        )
    rows.append(
        {"backend": name, "measure": f"batch of {batch}", "images/s": fmt(batch / best), "_b": best}
    )
    return rows


def _seconds(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def single_thread_onnx(model, path: Path):
    """The ONNX model with onnxruntime on 1 intra-op thread that does not spin, and torch (the
    preprocessing) on 1 thread: what suits one image at a time on 2 shared cores."""
    import dataclasses

    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def logits(x):
        return session.run(None, {name: x.numpy()})[0]

    torch.set_num_threads(1)
    return dataclasses.replace(model, logits=logits)


def server_peak_rss_mb(run: Path, photos: list[bytes], requests: int) -> float:
    import http.client

    from bench_serve import start_server

    proc, port = start_server(run, "torch", 2)
    try:
        for i in range(requests):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request(
                "POST", "/invocations", photos[i % len(photos)], {"Content-Type": "image/jpeg"}
            )
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"server answered {response.status}")
            conn.close()
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


THREAD_SETTINGS = {
    "2 threads, OMP_WAIT_POLICY=PASSIVE (bincount's default)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, OMP_WAIT_POLICY=ACTIVE (OpenMP's default)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
}


def child_latency(calls: int) -> None:
    """--child-latency: the default network's one-image p50 (ms) as one JSON line."""
    import json

    import torch

    from bincount.config.hydra import instantiate

    module = instantiate(_cfg().model, pretrained=False).eval()
    x = torch.zeros(1, 3, 224, 224)
    with torch.inference_mode():
        ms = latencies(module, [x] * calls, warmup=2)
    print(json.dumps({"p50_ms": statistics.median(ms)}))


def _cfg():
    from hydra import compose, initialize_config_dir

    from bincount.config import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train")


def thread_rows(calls: int) -> list[dict]:
    from report import child

    rows = []
    for name, env in THREAD_SETTINGS.items():
        out = child("bench_infer.py", ["--child-latency", str(calls)], env)
        rows.append({"threads": name, "p50 ms, one image, model only": f"{out['p50_ms']:.1f}"})
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--thread-calls", type=int, default=8, help="0: skip the thread settings")
    p.add_argument("--child-latency", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.child_latency:
        child_latency(args.child_latency)
        return []
    import logging

    import torch

    from bincount import inference
    from bincount.export import export_onnx

    logging.basicConfig(level=logging.WARNING)
    photos = [p.read_bytes() for p in sorted((ABID / "bin-images").glob("*.jpg"))[: args.images]]
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        onnx = export_onnx(run / "checkpoints" / "best.ckpt")
        rows = backend_rows(
            inference.model_fn(run, "torch"), "PyTorch eager", photos, args.batch, args.reps
        )
        rows += backend_rows(
            inference.model_fn(onnx, "onnx"), "ONNX Runtime", photos, args.batch, args.reps
        )
        server_mb = server_peak_rss_mb(run, photos, args.requests)
        threads = torch.get_num_threads()
        one = single_thread_onnx(inference.model_fn(onnx, "onnx"), onnx)
        rows += backend_rows(one, "ONNX Runtime, 1 thread", photos, args.batch, args.reps)
        torch.set_num_threads(threads)
    torch_b, onnx_b = rows[2].pop("_b"), rows[5].pop("_b")
    rows[8].pop("_b")
    p50 = {
        r["backend"]: float(r["p50 ms"]) for r in rows if r["measure"] == "one image, model only"
    }
    e2e = {
        r["backend"]: float(r["p50 ms"]) for r in rows if r["measure"] == "one image, end to end"
    }
    best = min(e2e.values())
    sections = [
        {
            "title": "Inference (EfficientNet-Lite0, 224 px)",
            "command": "benchmarks/bench_infer.py",
            "columns": ["backend", "measure", "p50 ms", "p99 ms", "images/s"],
            "rows": rows,
            "notes": [
                f"{args.images} real photos, one at a time after 3 warm-up calls; batch: best of "
                f"{args.reps}; torch threads {torch.get_num_threads()}, ONNX Runtime: its default; "
                "'1 thread': onnxruntime with intra_op_num_threads=1 and no spinning, and torch "
                "(preprocessing) on 1 thread",
                "ONNX Runtime vs PyTorch, one image (model only): "
                + ratio(p50["PyTorch eager"], p50["ONNX Runtime"])
                + f" faster; batch of {args.batch}: {ratio(torch_b, onnx_b)} faster",
                "target p50 < 25 ms for one image (end to end): "
                + ("met" if best < 25 else f"NOT met (best {best:.1f} ms)"),
                f"server (`bincount serve`, PyTorch backend) peak RSS after {args.requests} "
                f"requests: {server_mb:.0f} MB",
            ],
        }
    ]
    if args.thread_calls:
        sections.append(
            {
                "title": "Inference: CPU threads (one image, PyTorch eager)",
                "command": "benchmarks/bench_infer.py",
                "columns": ["threads", "p50 ms, one image, model only"],
                "rows": thread_rows(args.thread_calls),
                "notes": [f"each in its own process, {args.thread_calls} calls after 2 warm-ups"],
            }
        )
    emit(sections, args.json)
    return sections


if __name__ == "__main__":
    main()
