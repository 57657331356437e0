"""Run the app on waitress, a production WSGI server (threads, no reloader, no debugger).

What waitress does not do by itself, added here:
- the port can be bound before the model loads (`listen.listen`), so a busy port fails at once;
- waitress's own error answers (a body over the limit, a malformed request) are the app's
  JSON `{"error": ...}` and get an access line;
- a request whose headers and body have not all arrived within `connections.read_deadline`
  seconds is dropped (a slow body), besides waitress's idle timeout (`channel_timeout`).

Stalled uploads never hold a worker thread (waitress buffers a body before the app sees it),
but every open connection counts against `connections.limit`: it is high, so a few hundred
stalled clients do not lock out `/ping`, and the timeouts close them. Exposed beyond
localhost, put a reverse proxy in front (README, "Serving").
"""

from __future__ import annotations

import json
import logging
import resource
import socket
import time

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from bincount import inference
from bincount.errors import BincountError
from bincount.serving import accesslog
from bincount.serving.app import create_app, too_large
from bincount.serving.listen import listen
from bincount.settings import settings

log = logging.getLogger(__name__)


class _Parser(HTTPRequestParser):
    """A request being received, with the time its first bytes came.

    A body refused from its Content-Length is read and dropped before the 413 goes out (up to
    DRAIN_LIMIT times the limit): a client that sends its whole body before it reads the
    answer, as most do, would otherwise meet a reset connection instead of the JSON error.
    """

    DRAIN_LIMIT = 16
    drain_left = 0

    def __init__(self, adj):
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data):
        if self.drain_left:  # the rest of a refused body: counted, not kept
            n = min(len(data), self.drain_left)
            self.drain_left -= n
            self.completed = not self.drain_left
            return n
        n = super().received(data)
        if self.completed and isinstance(self.error, RequestEntityTooLarge):
            left = self.content_length - self.body_bytes_received
            if self.expect_continue:  # the client waits for a go-ahead: no "100 Continue"
                self.expect_continue = False  # (waitress would send one), the 413 at once
            elif not self.chunked and 0 < left <= self.DRAIN_LIMIT * self.adj.max_request_body_size:
                self.drain_left = left
                self.completed = False
        return n


def _target(request) -> str:
    """The path and query of a waitress request, as the app's access lines show them."""
    query = getattr(request, "query", "")
    return f"{request.path}?{query}" if query and request.path else request.path


class _ErrorTask(ErrorTask):
    """waitress's own error answers, as the app's JSON errors."""

    def execute(self):
        e = self.request.error
        if e.code == 413:
            message = too_large(self.channel.server.max_body_bytes)
        else:
            message = f"{e.reason}: {e.body}"
        body = json.dumps({"error": message}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        ms = (time.monotonic() - getattr(self.request, "started", time.monotonic())) * 1000
        accesslog.access(
            self.request.command, _target(self.request), e.code, len(body), ms, error=message
        )


class _Channel(HTTPChannel):
    parser_class = _Parser
    error_task_class = _ErrorTask


class Server(TcpWSGIServer):
    """waitress's TCP server, closing connections whose request arrives too slowly."""

    channel_class = _Channel
    read_deadline = 30.0
    max_body_bytes = 0

    def maintenance(self, now):
        super().maintenance(now)  # marks idle connections (channel_timeout) to close
        late = time.monotonic() - self.read_deadline
        for channel in list(self.active_channels.values()):
            request = channel.request
            if channel.requests or request is None or getattr(request, "cut", False):
                continue
            if channel.will_close:  # idle, in the middle of a request
                why = (
                    f"nothing arrived for {self.adj.channel_timeout} s in the middle of the "
                    "request (connections.idle_timeout): connection closed"
                )
            elif request.started < late:
                channel.will_close = True
                why = (
                    f"the request did not arrive within {self.read_deadline:g} s "
                    "(connections.read_deadline): connection closed"
                )
            else:
                continue
            request.cut = True
            ms = (time.monotonic() - request.started) * 1000
            accesslog.access(request.command, _target(request), 408, 0, ms, error=why)


def _allow_files(connections: int) -> None:
    """Raise the open-file limit to hold `connections` sockets, where the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def make_server(
    model: inference.Model,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 4,
    sock: socket.socket | None = None,
) -> Server:
    """A bound waitress server (port 0 picks a free one: `server.effective_port`); `sock`: one
    bound by `listen` already."""
    conf = settings()
    limits, connections = conf["limits"], conf.get("connections", {})
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BincountError(f"threads {threads!r}: use a whole number >= 1, e.g. --threads 4")
    sock = sock or listen(host, port)
    limit = int(connections.get("limit", 1000))
    _allow_files(limit)
    max_body = int(limits["max_body_bytes"])
    adj = Adjustments(
        sockets=[sock],
        threads=threads,
        # waitress refuses a body of max_request_body_size bytes or more: one byte over ours.
        max_request_body_size=max_body + 1,
        connection_limit=limit,
        channel_timeout=int(connections.get("idle_timeout", 30)),
        cleanup_interval=1,
        ident="bincount",
        clear_untrusted_proxy_headers=True,
    )
    server = Server(
        create_app(model),
        _sock=sock,
        adj=adj,
        bind_socket=False,
        sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
    )
    server.read_deadline = float(connections.get("read_deadline", 30))
    server.max_body_bytes = max_body
    return server


def serve(model: inference.Model, host: str, port: int, threads: int, sock=None) -> None:
    server = make_server(model, host, port, threads, sock=sock)
    log.info(
        "serving %s (%s, version %s) on http://%s:%s/  (POST /invocations, GET /ping)",
        model.info["run"],
        model.info["backend"],
        model.info["version"],
        host,
        server.effective_port,
    )
    try:
        server.run()
    finally:
        server.close()
