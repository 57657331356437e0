"""Soak of the local server: clients sending a mix of valid and bad bodies for minutes; the
statuses, zero 5xx, and the server's memory (RSS) after warm-up against the end.

    .venv/bin/python benchmarks/bench_soak.py RUN [--seconds 300] [--clients 8]
        [--warmup 30] [--max-requests 200000] [--backend torch] [--threads 4] [--json OUT]

Starts `bincount serve RUN --port 0` (its own process, 127.0.0.1), then:
1. burst: the RSS when idle, after 4 clients x 3 requests of two 6000x6000 PNGs each (72 MP,
   within the pixel budget), and 2 s later: the memory that decoding takes is given back;
2. soak: --clients threads send the mix below back to back, --warmup seconds first (not
   counted), then --seconds (or --max-requests in all): bounded in time and count, loopback
   only. The RSS is read after the warm-up, every 5 s, and 2 s after the end.
Mix (weights): a real photo with ?expected (10), a JSON list of 4 photos (2), not an image,
a truncated JPEG, a decompression bomb, malformed JSON, a wrong content type, 32 6000x6000
PNGs (the budget's 413) (1 each), one 6000x6000 PNG (0.5), a body over max_body_bytes (0.2).
Every answer must have the status its kind deserves. Exits 1 on any 5xx, any unexpected
status, or an RSS at the end more than 10% above the one after warm-up.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import http.client
import io
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from report import ROOT, emit

from bincount.serving.memory import rss_bytes


def start_server(run: Path, backend: str, threads: int):
    """`bincount serve` on a free port: (process, port, the last 50 lines of its stderr)."""
    command = [sys.executable, "-m", "bincount.cli", "serve", str(run), "--port", "0"]
    command += ["--backend", backend, "--threads", str(threads)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    tail: collections.deque = collections.deque(maxlen=50)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        tail.append(line)
        if not line and proc.poll() is not None:
            raise SystemExit(f"bincount serve exited with {proc.returncode}: {''.join(tail)}")
        if m := re.search(r"on http://127\.0\.0\.1:(\d+)/", line):
            threading.Thread(target=lambda: tail.extend(proc.stderr), daemon=True).start()
            return proc, int(m.group(1)), tail
    proc.kill()
    raise SystemExit("bincount serve did not start within 180 s")


def huge_png(side: int = 6000) -> bytes:
    from PIL import Image

    im = Image.new("RGB", (side, side), (120, 110, 100))
    im.paste((20, 200, 30), (side // 4, side // 4, side // 2, side // 2))
    out = io.BytesIO()
    im.save(out, "PNG", compress_level=9)
    return out.getvalue()


def bomb(photo: bytes, side: int = 30000) -> bytes:
    data, i = bytearray(photo), 2
    while i < len(data):
        if data[i + 1] in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = side.to_bytes(2, "big") * 2
            return bytes(data)
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    raise ValueError("no start-of-frame marker")


def mix(source: Path, max_body: int) -> list[tuple[str, float, list, int]]:
    """[(kind, weight, [(path, body, content type)], expected status)]."""
    metas = sorted((source / "metadata").glob("*.json"))[::50][:40]
    photos = [
        (
            (source / "bin-images" / f"{m.stem}.jpg").read_bytes(),
            json.loads(m.read_text())["EXPECTED_QUANTITY"],
        )
        for m in metas
    ]
    b64 = [base64.b64encode(p).decode() for p, _ in photos]
    png = huge_png()
    png64 = base64.b64encode(png).decode()
    jpeg = "image/jpeg"
    valid = [(f"/invocations?expected={n}", p, jpeg) for p, n in photos]
    lists = [
        ("/invocations", json.dumps({"images": b64[i : i + 4]}).encode(), "application/json")
        for i in range(0, len(b64) - 4, 4)
    ]
    p0 = photos[0][0]
    return [
        ("photo", 10, valid, 200),
        ("json list of 4", 2, lists, 200),
        ("not an image", 1, [("/invocations", b"%PDF-1.4 not a photo", jpeg)], 400),
        ("truncated JPEG", 1, [("/invocations", p0[: len(p0) // 3], jpeg)], 400),
        ("decompression bomb", 1, [("/invocations", bomb(p0), jpeg)], 413),
        ("malformed JSON", 1, [("/invocations", b'{"image": "abc', "application/json")], 400),
        ("wrong content type", 1, [("/invocations", p0, "text/plain")], 415),
        (
            "32 x 6000x6000 PNG",
            1,
            [("/invocations", json.dumps({"images": [png64] * 32}).encode(), "application/json")],
            413,
        ),
        ("one 6000x6000 PNG", 0.5, [("/invocations", png, "image/png")], 200),
        ("body over the limit", 0.2, [("/invocations", b"\xff" * (max_body + 1000), jpeg)], 413),
    ]


def post(conn, path: str, body: bytes, ctype: str) -> int:
    conn.request("POST", path, body, {"Content-Type": ctype})
    response = conn.getresponse()
    response.read()
    return response.status


def run_clients(port, kinds, clients, seconds, cap, seed, counts, lock, sent):
    stop_at = time.monotonic() + seconds
    names = [k[0] for k in kinds]
    weights = [k[1] for k in kinds]
    by_name = {k[0]: k for k in kinds}

    def client(n: int) -> None:
        rng = random.Random(seed + n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < stop_at:
            with lock:
                if sent[0] >= cap:
                    break
                sent[0] += 1
            name = rng.choices(names, weights)[0]
            _, _, bodies, want = by_name[name]
            path, body, ctype = rng.choice(bodies)
            try:
                status = post(conn, path, body, ctype)
            except (OSError, http.client.HTTPException) as e:
                status = f"client error: {type(e).__name__}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                counts[(name, status, want)] += 1
        conn.close()

    workers = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def mb(pid: int) -> float:
    return rss_bytes(pid) / 1e6


def burst(port: int, pid: int, png: bytes, photo: bytes) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(3):
        post(conn, "/invocations", photo, "image/jpeg")
    idle = mb(pid)
    body = json.dumps({"images": [base64.b64encode(png).decode()] * 2}).encode()
    peak, statuses, stop = [idle], Counter(), threading.Event()

    def watch():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], mb(pid))

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(3):
            statuses[post(c, "/invocations", body, "application/json")] += 1

    threading.Thread(target=watch, daemon=True).start()
    clients = [threading.Thread(target=client) for _ in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    post(conn, "/invocations", photo, "image/jpeg")
    time.sleep(2)
    stop.set()
    return {"idle": idle, "peak": peak[0], "after": mb(pid), "statuses": dict(statuses)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder or a checkpoint")
    p.add_argument("--seconds", type=float, default=300.0, help="soak duration (300)")
    p.add_argument("--warmup", type=float, default=30.0, help="not counted (30)")
    p.add_argument("--clients", type=int, default=8, help="client threads (8)")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap in all (200000)")
    p.add_argument("--backend", default="torch", help="torch or onnx (torch)")
    p.add_argument("--threads", type=int, default=4, help="server threads (4)")
    p.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "abid")
    p.add_argument("--seed", type=int, default=0, help="of the clients' choices")
    p.add_argument("--json", help="write the tables here too (benchmarks/run_all.py)")
    args = p.parse_args()

    from bincount.settings import settings

    max_body = int(settings()["limits"]["max_body_bytes"])
    kinds = mix(args.source, max_body)
    proc, port, tail = start_server(args.run, args.backend, args.threads)
    try:
        photo = kinds[0][2][0][1]
        b = burst(port, proc.pid, huge_png(), photo)
        lock, sent, counts = threading.Lock(), [0], Counter()
        run_clients(port, kinds, args.clients, args.warmup, 10**9, args.seed, Counter(), lock, [0])
        warm = mb(proc.pid)
        samples, stop = [warm], threading.Event()

        def watch():
            while not stop.wait(5):
                samples.append(mb(proc.pid))

        threading.Thread(target=watch, daemon=True).start()
        started = time.monotonic()
        run_clients(
            port, kinds, args.clients, args.seconds, args.max_requests, args.seed + 100,
            counts, lock, sent,
        )  # fmt: skip
        wall = time.monotonic() - started
        stop.set()
        time.sleep(2)
        end = mb(proc.pid)
        alive = proc.poll() is None
    except Exception:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        print(f"the server's state: {proc.poll()}; its last lines:", file=sys.stderr)
        print("".join(list(tail)[-20:]), file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    total = sum(counts.values())
    by_status = Counter()
    for (_, status, _), n in counts.items():
        by_status[status] += n
    fives = sum(n for s, n in by_status.items() if isinstance(s, int) and s >= 500)
    unexpected = {f"{k} -> {s} (want {w})": n for (k, s, w), n in counts.items() if s != w}
    growth = end / warm - 1
    rows = [
        {"kind": k, "weight": w, "status": want, "requests": sum(
            n for (name, _, _), n in counts.items() if name == k
        )}
        for k, w, _, want in kinds
    ]  # fmt: skip
    sections = [
        {
            "title": f"Soak: {args.clients} clients, valid and bad bodies, "
            f"{wall / 60:.1f} min ({args.backend} backend, {args.threads} server threads)",
            "command": f"benchmarks/bench_soak.py RUN --seconds {args.seconds:g} "
            f"--clients {args.clients}",
            "columns": ["kind", "weight", "status", "requests"],
            "rows": rows,
            "notes": [
                f"{total} requests ({total / wall:.1f}/s) after a {args.warmup:g} s warm-up; "
                "statuses: "
                + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items(), key=str)),
                f"5xx: {fives}; unexpected statuses: {unexpected or 'none'}; server alive "
                f"at the end: {alive}",
                f"server RSS: {warm:.0f} MB after warm-up, {end:.0f} MB at the end "
                f"({growth:+.1%}), highest sample {max(samples):.0f} MB",
                f"burst of 4 x 3 requests of 2 x 6000x6000 PNG ({b['statuses']}): RSS idle "
                f"{b['idle']:.0f} MB, peak {b['peak']:.0f} MB, 2 s after {b['after']:.0f} MB",
            ],
        }
    ]
    emit(sections, args.json)
    ok = fives == 0 and not unexpected and alive and growth <= 0.10
    print("OK" if ok else "FAILED: 5xx, unexpected statuses, or RSS grew more than 10%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
