"""Load on the local server: requests/s, p50 and p99 latency for the PyTorch and ONNX backends.

    .venv/bin/python benchmarks/bench_serve.py RUN [--seconds 30] [--clients 4]
        [--max-requests 20000] [--images 32] [--threads 4] [--backends torch onnx]

For each backend, starts `bincount serve RUN --port 0 --backend B` (its own process, on
127.0.0.1), waits for /ping, then --clients threads POST real photos of ../shared/abid (each
with ?expected=N, so verdicts are computed too) back to back for --seconds, or until
--max-requests in all: bounded in time and in count, loopback only. Prints requests/s, p50,
p99 and the error count per backend, and the ONNX/PyTorch throughput ratio; exits 1 if any
request failed. The ONNX backend needs `bincount export RUN` first (done here if missing).
The cores are shared with the clients (and, here, with other work): compare the ratio rather
than the absolute figures.
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def start_server(run: Path, backend: str, threads: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bincount.cli",
            "serve",
            str(run),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--backend",
            backend,
            "--threads",
            str(threads),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"bincount serve ({backend}) exited with {proc.returncode}")
        if m := re.search(r"on http://127\.0\.0\.1:(\d+)/", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep it drained
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit(f"bincount serve ({backend}) did not start within 180 s")


def load(port: int, bodies: list[tuple[bytes, int]], seconds: float, clients: int, cap: int):
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = [0]
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < stop_at:
            with lock:
                if sent[0] >= cap:
                    return
                sent[0] += 1
            body, expected = bodies[i % len(bodies)]
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request(
                    "POST",
                    f"/invocations?expected={expected}",
                    body,
                    {"Content-Type": "image/jpeg"},
                )
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as e:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                response = e
            elapsed = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors.append(str(getattr(response, "status", response)))
        conn.close()

    started = time.monotonic()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies, errors, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=20000)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=4, help="server threads")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "abid")
    args = parser.parse_args()

    import json

    metas = sorted((args.source / "metadata").glob("*.json"))
    metas = metas[:: max(1, len(metas) // args.images)][: args.images]
    bodies = [
        (
            (args.source / "bin-images" / f"{m.stem}.jpg").read_bytes(),
            json.loads(m.read_text())["EXPECTED_QUANTITY"],
        )
        for m in metas
    ]
    if "onnx" in args.backends and not (args.run / "onnx" / "model.onnx").is_file():
        from bincount.export import export_onnx

        export_onnx(args.run)

    rows = {}
    for backend in args.backends:
        proc, port = start_server(args.run, backend, args.threads)
        try:
            load(port, bodies[:4], 3.0, args.clients, 50)  # warm-up, not counted
            latencies, errors, wall = load(
                port, bodies, args.seconds, args.clients, args.max_requests
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
        rows[backend] = {
            "requests": len(latencies),
            "rps": len(latencies) / wall,
            "p50_ms": 1000 * q[49],
            "p99_ms": 1000 * q[98],
            "errors": len(errors),
        }
    print(
        f"{len(bodies)} real photos, {args.clients} concurrent clients, "
        f"{args.seconds:.0f} s per backend, server threads {args.threads}"
    )
    print("| backend | requests | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for backend, r in rows.items():
        print(
            f"| {backend} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
            f"{r['p99_ms']:.0f} | {r['errors']} |"
        )
    if {"torch", "onnx"} <= set(rows) and rows["torch"]["rps"]:
        print(f"onnx / torch throughput: {rows['onnx']['rps'] / rows['torch']['rps']:.2f}x")
    return 1 if any(r["errors"] for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
