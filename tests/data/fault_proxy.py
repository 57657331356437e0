"""A loopback HTTP proxy in front of an S3 API server (moto) that injects faults or delay.

Used by the data tests (throttling, 5xx, cut connections, a slow server to kill a fetch in)
and by benchmarks/bench_fetch.py (network latency). Real requests, real sockets: no mocks.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of the moto server.

    `fault(method, path, n)` is asked for every request (n: how many times that path was seen
    before) and returns None to forward it, or "503" / "500" (an S3 error answer), or
    "truncate" (the headers promise the whole body, half is sent, the connection is closed).
    `delay` seconds are waited before each forwarded request.
    """

    def __init__(self, upstream: str, fault=None, delay: float = 0.0):
        self.upstream = upstream.removeprefix("http://")
        self.fault = fault or (lambda method, path, n: None)
        self.delay = delay
        self.seen: dict[str, int] = {}
        self.methods: Counter[str] = Counter()
        self.injected: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms stalls

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                with proxy.lock:
                    n = proxy.seen.get(path, 0)
                    proxy.seen[path] = n + 1
                    proxy.methods[self.command] += 1
                    fault = proxy.fault(self.command, path, n)
                    if fault:
                        proxy.injected.append((fault, path))
                if fault in ("503", "500"):
                    code = "SlowDown" if fault == "503" else "InternalError"
                    err = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
                    self._reply(int(fault), {"Content-Type": "application/xml"}, err.encode())
                    return
                time.sleep(proxy.delay)
                status, headers, data = proxy._forward(self.command, self.path, self.headers, body)
                if fault == "truncate" and len(data) > 1:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(status, dict(headers), data)

            def _reply(self, status, headers, data):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            skip = {"content-length", "connection", "transfer-encoding"}
            conn.request(
                method, path, body, {k: v for k, v in headers.items() if k.lower() not in skip}
            )
            response = conn.getresponse()
            data = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in skip and k.lower() not in ("server", "date")
            ]
            return response.status, kept, data
        finally:
            conn.close()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
