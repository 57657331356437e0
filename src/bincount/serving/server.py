"""Run the app on waitress, a production WSGI server (threads, no reloader, no debugger).

What waitress does not do by itself, added here:
- the port can be bound before the model loads (`listen.listen`), so a busy port fails at once;
- waitress's own error answers (a body over the limit, a malformed request) are the app's
  JSON `{"error": ...}` and get an access line;
- a request whose headers and body have not all arrived within `connections.read_deadline`
  seconds is dropped (a slow body), besides waitress's idle timeout (`channel_timeout`);
- every request gets ONE access line whatever happened to it (answered by the app or by
  waitress, cut by a deadline, closed by the client half sent), with its method and path as far
  as they arrived ('-' otherwise): no code path that logs assumes a request line was parsed,
  and a fault in the connection upkeep is logged, never fatal;
- SIGTERM stops gracefully: no new connections, the requests under way finish within
  `connections.shutdown_grace` seconds, then `bincount serve` exits 0.

Stalled uploads never hold a worker thread (waitress buffers a body before the app sees it),
but every open connection counts against `connections.limit`: it is high, so a few hundred
stalled clients do not lock out `/ping`, and the timeouts close them. Exposed beyond
localhost, put a reverse proxy in front (README, "Serving").
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import resource
import signal
import socket
import time

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from bincount import inference
from bincount.errors import BincountError
from bincount.serving import accesslog
from bincount.serving.app import create_app, too_large
from bincount.serving.listen import listen
from bincount.settings import settings

log = logging.getLogger(__name__)


class _Parser(HTTPRequestParser):
    """A request being received, with the time its first bytes came and its raw first line.

    A body refused from its Content-Length is read and dropped before the 413 goes out (up to
    DRAIN_LIMIT times the limit): a client that sends its whole body before it reads the
    answer, as most do, would otherwise meet a reset connection instead of the JSON error.

    `command`, `path` and `query` exist from the start (None until the request line is
    parsed; waitress sets them only then): every code path that logs a request may read them,
    whatever arrived.
    """

    DRAIN_LIMIT = 16
    HEAD_KEPT = 8192  # bytes of the start of a request kept to name it in the access line
    drain_left = 0
    command = None
    path = None
    query = ""
    cut = False  # its access line is written (the server closed it): no second one

    def __init__(self, adj):
        super().__init__(adj)
        self.started = time.monotonic()
        self.head = b""

    def received(self, data):
        if not self.headers_finished and len(self.head) < self.HEAD_KEPT:
            self.head += bytes(data[: self.HEAD_KEPT - len(self.head)])
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


_METHOD = re.compile(r"[A-Z]{1,20}")


def request_line(request) -> tuple[str, str]:
    """(method, path?query) of a request as far as it arrived, '-' for what did not: the
    parsed request line, or the raw one (a 431 is parsed as a made-up `GET /`, a 400 for a bad
    header before its line is parsed, a request cut before its headers ended)."""
    if request is None:
        return "-", "-"
    parsed = getattr(request, "command", None)
    if parsed and not isinstance(request.error, RequestHeaderFieldsTooLarge):
        path = getattr(request, "path", None) or "-"
        query = getattr(request, "query", "")
        return parsed, f"{path}?{query}" if query and path != "-" else path
    raw = getattr(request, "head", b"")
    line, newline, _ = raw.partition(b"\n")
    parts = line.rstrip(b"\r").decode("latin-1").split(" ")
    # A word is known once the space after it came (or the line's end): "GET /pi" is GET, -.
    known = len(parts) if newline else len(parts) - 1
    if known < 1 or not _METHOD.fullmatch(parts[0]) or (newline and len(parts) != 3):
        return "-", "-"
    if known < 2 or not parts[1]:
        return parts[0], "-"
    target = parts[1] if parts[1].isprintable() else parts[1].encode("unicode_escape").decode()
    return parts[0], target[:200]


def _log_closed(request, status: int, why: str) -> None:
    """The one access line of a request the server answered or closed outside the app."""
    request.cut = True
    method, target = request_line(request)
    ms = (time.monotonic() - getattr(request, "started", time.monotonic())) * 1000
    accesslog.access(method, target, status, 0, ms, error=why)


class _ErrorTask(ErrorTask):
    """waitress's own error answers (a malformed request, headers too large, a body over the
    limit, bad chunked encoding), as the app's JSON errors, with one access line each."""

    def execute(self):
        e = self.request.error
        if e.code == 413:
            message = too_large(self.channel.server.max_body_bytes)
        elif e.code == 431:
            message = (
                f"the request's headers are larger than {self.channel.adj.max_request_header_size}"
                " bytes: send fewer or shorter headers"
            )
        else:
            message = f"{e.reason}: {e.body}"
        body = json.dumps({"error": message}).encode()
        # The access line first, as the app's (written before its answer leaves): once the
        # client has the answer it may send its next request, whose line must come after.
        try:
            method, target = request_line(self.request)
            ms = (time.monotonic() - getattr(self.request, "started", time.monotonic())) * 1000
            accesslog.access(method, target, e.code, len(body), ms, error=message)
        except Exception:  # a log line never takes an answer (or the server) down
            log.exception("could not log the %s answer", e.code)
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    parser_class = _Parser
    error_task_class = _ErrorTask

    def handle_close(self):
        """A connection closed with a request half received: its one access line (the
        server's own cuts are logged by `Server.maintenance`)."""
        request = self.request
        try:
            # will_close: the server closes it (after an answer, bytes past it are no request)
            half = request is not None and request.head and not (request.completed or request.cut)
            if half and not self.will_close:
                _log_closed(
                    request, 499, "the client closed the connection before its request arrived"
                )
        except Exception:
            log.exception("could not log a closed connection")
        super().handle_close()


class Server(TcpWSGIServer):
    """waitress's TCP server, closing connections whose request arrives too slowly, and
    stopping gracefully (`drain`: SIGTERM in `serve`)."""

    channel_class = _Channel
    read_deadline = 30.0
    max_body_bytes = 0
    shutdown_grace = 30.0
    drain_until: float | None = None  # monotonic time; set by drain()

    def maintenance(self, now):
        # Run from waitress's loop (readable()): an exception here would end the loop, and the
        # server with it; a fault is logged and the loop goes on.
        try:
            super().maintenance(now)  # marks idle connections (channel_timeout) to close
            self._cut_late(time.monotonic() - self.read_deadline)
        except Exception:
            log.exception("connection maintenance failed (the server goes on)")

    def _cut_late(self, late: float) -> None:
        for channel in list(self.active_channels.values()):
            request = channel.request
            if channel.requests or request is None or request.cut:
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
            _log_closed(request, 408, why)

    def drain(self, grace: float | None = None) -> None:
        """Stop gracefully: no new connections, requests under way finish (up to `grace`
        seconds, connections.shutdown_grace), then `run` returns. Safe from a signal handler
        (it only sets a time and wakes the loop)."""
        if self.drain_until is None:
            grace = self.shutdown_grace if grace is None else grace
            self.drain_until = time.monotonic() + grace
        with contextlib.suppress(OSError):
            self.trigger._physical_pull()  # wake the loop now (no lock: signal-safe)

    def run(self):
        """waitress's loop, one poll at a time, until `drain` has let every request finish."""
        try:
            while self._map:
                wasyncore.loop(
                    timeout=self.adj.asyncore_loop_timeout,
                    map=self._map,
                    use_poll=self.adj.asyncore_use_poll,
                    count=1,
                )
                if self.drain_until is not None and self._drained():
                    break
        except (SystemExit, KeyboardInterrupt):
            pass
        finally:
            self.task_dispatcher.shutdown()

    def _drained(self) -> bool:
        """One step of a graceful stop: True once nothing is left (or the grace is over)."""
        if self.accepting:
            self.accepting = False
            busy = sum(1 for c in self.active_channels.values() if _busy(c))
            log.info(
                "stopping: no new connections; %d request(s) under way get up to %g s to finish "
                "(connections.shutdown_grace)",
                busy,
                round(max(0.0, self.drain_until - time.monotonic()), 1),
            )
            wasyncore.dispatcher.close(self)  # the listening socket: new clients are refused
        left = [c for c in list(self.active_channels.values()) if _busy(c)]
        for channel in list(self.active_channels.values()):
            if not _busy(channel):  # idle keep-alive connections: closed now
                channel.handle_close()
        if not left:
            log.info("stopped: every request answered")
            return True
        if time.monotonic() >= self.drain_until:
            log.warning("stopped with %d request(s) unfinished after the grace period", len(left))
            for channel in left:
                if channel.request is not None and not channel.request.cut:
                    _log_closed(channel.request, 503, "the server stopped before it arrived")
                channel.handle_close()
            return True
        return False


def _busy(channel) -> bool:
    """A connection with a request being received, run or answered."""
    request = channel.request
    receiving = request is not None and not request.cut and bool(request.head)
    return bool(receiving or channel.requests or channel.total_outbufs_len)


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
    server.shutdown_grace = float(connections.get("shutdown_grace", 30))
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
    # SIGTERM (what SageMaker and every orchestrator send before stopping a container): stop
    # taking connections, let the requests under way finish, return (exit 0).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: server.drain())
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
