"""Hostile and broken clients on raw sockets, against a real server on 127.0.0.1: every error
path of waitress (a request line and nothing more, trickled headers, a bad header, headers too
large, bad chunked encoding, an unknown transfer encoding, a garbage start line, a client gone
half way), one connection at a time and 300 at once. After each: the server is alive, /ping
answers within 1 s, and the connection got exactly ONE access line naming its method and path
as far as they arrived ('-' otherwise). Then a graceful stop (SIGTERM) of a real `bincount
serve`: the requests under way are answered, new clients refused, exit 0."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

BINCOUNT = [sys.executable, "-m", "bincount.cli"]
DEADLINE = 1.0  # connections.read_deadline of these tests (30 s by default)


@pytest.fixture
def access(caplog):
    caplog.set_level(logging.INFO, logger="bincount.access")
    return lambda: [r.fields for r in caplog.records if r.name == "bincount.access"]


@pytest.fixture
def fast(new_server):
    """A server whose read deadline is DEADLINE s and idle timeout 2 s (30 s each by default),
    with small header and body limits (a refused request fits in one read: no reset races)."""
    s = new_server()
    s.httpd.read_deadline = DEADLINE
    s.httpd.adj.channel_timeout = 2
    s.httpd.adj.max_request_header_size = 4096
    s.httpd.adj.max_request_body_size = 1001
    s.httpd.max_body_bytes = 1000
    return s


def ping_seconds(port: int) -> float:
    """Seconds /ping takes to answer 200 (socket.timeout past 1 s)."""
    t = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    finally:
        conn.close()
    return time.monotonic() - t


def exchange(port: int, data: bytes, wait: float = 0.0, trickle: float = 0.0) -> bytes:
    """Send `data` (one byte every `trickle` s if given), wait, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            if trickle:
                for i in range(len(data)):
                    sock.sendall(data[i : i + 1])
                    time.sleep(trickle)
            else:
                sock.sendall(data)
        except OSError:  # cut by the server while sending: what it answered is read below
            pass
        time.sleep(wait)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


HUGE_HEADER = b"X-Big: " + b"a" * 5000 + b"\r\n"

# (name, bytes sent, how: wait s / trickle s, status answered (None: closed), status logged,
#  method and path logged, words of the error)
CASES = [
    (
        "request line only",
        b"GET /ping HTTP/1.1\r\n",
        (3, 0),
        None,
        408,
        "GET",
        "/ping",
        "read_deadline",
    ),
    ("half a request line", b"POST /invocati", (3, 0), None, 408, "POST", "-", "read_deadline"),
    (
        "trickled headers",
        b"GET /ping?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaa",
        (0, 0.05),
        None,
        408,
        "GET",
        "/ping?x=1",
        "read_deadline",
    ),
    (
        "invalid header",
        b"GET /ping HTTP/1.1\r\nbad header line\r\n\r\n",
        (0, 0),
        400,
        400,
        "GET",
        "/ping",
        "Invalid header",
    ),
    (
        "headers too large",
        b"POST /invocations?expected=2 HTTP/1.1\r\n" + HUGE_HEADER + b"\r\n",
        (0, 0),
        431,
        431,
        "POST",
        "/invocations?expected=2",
        "headers are larger",
    ),
    (
        "bad chunked encoding",
        b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: image/jpeg\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        (0, 0),
        400,
        400,
        "POST",
        "/invocations",
        "Bad Request",
    ),
    (
        "unknown transfer encoding",
        b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        (0, 0),
        501,
        501,
        "POST",
        "/invocations",
        "Not Implemented",
    ),
    (
        "garbage start line",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        (0, 0),
        400,
        400,
        "-",
        "-",
        "Bad Request",
    ),
    (
        "bare CR in the request line",
        b"GET /p\ring HTTP/1.1\r\n\r\n",
        (0, 0),
        400,
        400,
        "GET",
        "/p\\ring",
        "Bad Request",
    ),
    (
        "chunked body over the limit",
        None,
        (0, 0),
        413,
        413,
        "POST",
        "/invocations",
        "max_body_bytes",
    ),
]


def _chunked_over(limit: int) -> bytes:
    chunk = b"\xff" * 500
    body = b"".join(
        b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(limit // len(chunk) + 2)
    )
    return (
        b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: image/jpeg"
        b"\r\n\r\n" + body + b"0\r\n\r\n"
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_error_path_answers_or_closes_logs_one_line_and_the_server_lives(fast, access, case):
    _, data, (wait, trickle), answered, logged, method, path, words = case
    if data is None:
        data = _chunked_over(fast.httpd.max_body_bytes)
    out = exchange(fast.port, data, wait, trickle)
    if answered is None:
        assert out == b"", out[:200]  # closed without an answer
    else:
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d" % answered) or head.startswith(
            b"HTTP/1.0 %d" % answered
        ), out[:300]
        assert words in json.loads(body)["error"]
    time.sleep(0.3)  # the access line of a cut connection is written by the server's loop
    assert fast.thread.is_alive()
    assert ping_seconds(fast.port) < 1.0
    lines = [f for f in access() if f["path"] != "/ping" or f["status"] != 200]
    assert len(lines) == 1, lines
    (line,) = lines
    assert (line["method"], line["path"], line["status"]) == (method, path, logged)
    assert words in line["error"]


def test_a_client_gone_half_way_gets_one_line(fast, access):
    with socket.create_connection(("127.0.0.1", fast.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations?expected=1 HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.3)
    time.sleep(0.5)
    assert ping_seconds(fast.port) < 1.0
    (line,) = [f for f in access() if f["path"] != "/ping"]
    assert line["status"] == 499 and line["path"] == "/invocations?expected=1"
    assert "client closed" in line["error"]


# 300 clients in a process of their own (as real clients are: not sharing the server's GIL):
# each sends a request line and a header, then a header byte every 0.25 s, never finishing.
TRICKLERS = """
import socket, sys, time
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /ping?c=%d HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n" % i)
    socks.append(s)
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for s in socks:
        try:
            s.sendall(b"a")
        except OSError:
            pass
    time.sleep(0.25)
"""


def test_300_trickling_connections_leave_ping_under_a_second_and_one_line_each(new_server, access):
    s = new_server()
    s.httpd.read_deadline = 3.0
    clients = subprocess.Popen(
        [sys.executable, "-c", TRICKLERS, str(s.port), "300", "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert clients.stdout.readline().strip() == "ready"
        times = []
        while clients.poll() is None:  # 6 s of trickling: all of them are cut meanwhile
            times.append(ping_seconds(s.port))
            time.sleep(0.1)
        assert clients.returncode == 0
        print(f"/ping: {len(times)} answers, slowest {max(times):.3f} s")
        assert len(times) > 10 and max(times) < 1.0
        assert s.thread.is_alive()
    finally:
        if clients.poll() is None:
            clients.kill()
        clients.wait()
    time.sleep(0.5)
    cut = [f for f in access() if f["status"] != 200]
    assert len(cut) == 300 and {f["status"] for f in cut} == {408}
    assert sorted(f["path"] for f in cut) == sorted(f"/ping?c={i}" for i in range(300))
    assert {f["method"] for f in cut} == {"GET"}
    assert ping_seconds(s.port) < 1.0


def test_drain_answers_what_is_under_way_and_cuts_at_the_grace(new_server, access, photo):
    s = new_server()
    # an upload under way: headers and half the photo
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: %d\r\n\r\n" % len(photo)
    )
    slow = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    slow.sendall(head + photo[: len(photo) // 2])
    stalled = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    stalled.sendall(head + photo[:100])  # never finishes
    time.sleep(0.3)
    t = time.monotonic()
    s.httpd.drain(grace=3.0)
    time.sleep(0.3)
    with pytest.raises(OSError):  # no new connections
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    slow.sendall(photo[len(photo) // 2 :])
    answer = slow.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 200") and b'"count"' in answer
    s.thread.join(10)
    assert not s.thread.is_alive() and 2.5 < time.monotonic() - t < 6
    assert stalled.recv(10) == b""
    slow.close()
    stalled.close()
    statuses = sorted(f["status"] for f in access())
    assert statuses == [200, 503]


def _wait_port(proc) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "bincount serve exited"
        if m := re.search(r"on http://127\.0\.0\.1:(\d+)/", line):
            return int(m.group(1))
    raise AssertionError("bincount serve did not start")


def test_sigterm_finishes_requests_under_way_and_exits_0(served_run, photo):
    big = Image.new("RGB", (5000, 5000), (120, 110, 100))
    big.paste((20, 200, 30), (1000, 1000, 3000, 3000))
    out = io.BytesIO()
    big.save(out, "PNG", compress_level=1)
    heavy = json.dumps({"images": [base64.b64encode(out.getvalue()).decode()] * 2}).encode()
    proc = subprocess.Popen(
        [*BINCOUNT, "serve", served_run, "--port", "0", "--threads", "2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = _wait_port(proc)
        # 1. an upload under way: headers and half the photo
        slow = socket.create_connection(("127.0.0.1", port), timeout=60)
        slow.sendall(
            b"POST /invocations?expected=3 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % len(photo) + photo[: len(photo) // 2]
        )
        # 2. a request being computed: two 25 MP images (seconds of decoding)
        answers = {}

        def heavy_request():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/invocations", heavy, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answers["heavy"] = (response.status, json.loads(response.read()))
            conn.close()

        worker = threading.Thread(target=heavy_request)
        worker.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # stopped taking connections
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        slow.sendall(photo[len(photo) // 2 :])
        answer = slow.makefile("rb").read()
        slow.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["expected"] == 3
        worker.join(120)
        status, body = answers["heavy"]
        assert status == 200 and len(body["predictions"]) == 2
        assert proc.wait(60) == 0
        log = proc.stderr.read()
        assert "stopping: no new connections" in log and "every request answered" in log
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
