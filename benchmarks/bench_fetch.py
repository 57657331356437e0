"""Fetch throughput against a local S3 API server (moto) at 1, 8 and 32 concurrent requests.

    .venv/bin/python benchmarks/bench_fetch.py [--images 300] [--repeat 2]

Starts moto's server on 127.0.0.1 (in its own process; --in-process to share this one),
loads it with real images of ../shared/abid (a public-read bucket, read with unsigned
requests like the real one), then fetches them into fresh folders with
`bincount.data.fetch` and prints files/s and MB/s for each concurrency (best of --repeat
runs) and the speed-up over one request at a time: once as it is, once with 20 ms added to
every request by a loopback proxy (tests/data/fault_proxy.py), as a network to the real
bucket would. The machine's cores are shared by server, proxy and client.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(host: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit(f"moto_server did not start on {host}:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--abid", default=str(ROOT.parent / "shared" / "abid"))
    parser.add_argument(
        "--in-process", action="store_true", help="run moto in this process (shares the GIL)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        nargs="+",
        default=[0.0, 0.02],
        help="seconds added to every request by a loopback proxy, as a network would "
        "(default: 0 and 0.02; one table each)",
    )
    args = parser.parse_args()

    import logging

    import boto3
    from fault_proxy import FaultProxy  # tests/data/fault_proxy.py: a loopback proxy
    from moto.server import ThreadedMotoServer

    from bincount.data import s3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if args.in_process:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
    else:  # its own process, as a real server would be: it does not share our GIL
        host, port = "127.0.0.1", free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", host, "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(host, port)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    abid = Path(args.abid)
    ids = sorted(p.stem for p in (abid / "metadata").glob("*.json"))[: args.images]
    client = boto3.client("s3")
    client.create_bucket(Bucket="bench-abid")
    client.put_bucket_policy(Bucket="bench-abid", Policy=s3.public_read_policy("bench-abid"))
    total_bytes = 0
    for i in ids:
        for key in (f"bin-images/{i}.jpg", f"metadata/{i}.json"):
            data = (abid / key).read_bytes()
            total_bytes += len(data)
            client.put_object(Bucket="bench-abid", Key=key, Body=data)
    print(
        f"{len(ids)} images, {2 * len(ids)} files, {total_bytes / 1e6:.1f} MB in a moto bucket "
        f"on 127.0.0.1; {os.cpu_count()} cores; best of {args.repeat}"
    )

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    tables = []
    for latency in args.latency:
        proxy = FaultProxy(endpoint, delay=latency) if latency else None
        os.environ["AWS_ENDPOINT_URL"] = proxy.url if proxy else endpoint
        tables.append((latency, run(ids, args.concurrency, args.repeat)))
        if proxy:
            proxy.close()
    if args.in_process:
        server.stop()
    else:
        server.terminate()
        server.wait()
    for latency, results in tables:
        added = f"{latency * 1000:.0f} ms added to each request" if latency else "no added latency"
        print(f"\n{added}:")
        print(f"{'concurrency':>11} {'seconds':>8} {'files/s':>8} {'MB/s':>7} {'vs 1':>6}")
        base = results[0][2] / results[0][1]
        for concurrency, seconds, files, nbytes in results:
            rate = files / seconds
            print(
                f"{concurrency:>11} {seconds:>8.2f} {rate:>8.1f} {nbytes / 1e6 / seconds:>7.2f} "
                f"{rate / base:>5.2f}x"
            )


def run(ids: list[str], levels: list[int], repeat: int) -> list[tuple[int, float, int, int]]:
    """(concurrency, best seconds, files, bytes) of a full fetch at each concurrency."""
    from bincount.data import fetch, sources

    results = []
    for concurrency in levels:
        best = None
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                store = sources.open_store("s3://bench-abid", connections=concurrency)
                start = time.perf_counter()
                report = fetch.fetch(
                    store, Path(tmp) / "out", ids=ids, concurrency=concurrency, progress=False
                )
                seconds = time.perf_counter() - start
            assert len(report.complete) == len(ids) and not report.failed, report.summary()
            if best is None or seconds < best[0]:
                best = (seconds, report.files, report.bytes)
        results.append((concurrency, *best))
    return results


if __name__ == "__main__":
    main()
