"""Binding the server's port, torch-free: `bincount serve` binds it before the model loads, so
a port out of range, taken, or an unknown host fails in one line at once."""

from __future__ import annotations

import errno
import socket

from bincount.errors import BincountError


def check_port(port) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BincountError(f"port {port!r} is not a TCP port: use 1-65535 (0 picks a free one)")
    return port


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (BincountError if the port is taken or the host unknown)."""
    check_port(port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise BincountError(
            f"cannot listen on {host!r} ({e}): give an address such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        why = "the port is in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
        raise BincountError(
            f"cannot listen on {host}:{port} ({why}): pick another --port"
        ) from None
    return sock
