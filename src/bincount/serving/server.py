"""Run the app on waitress, a production WSGI server (threads, no reloader, no debugger)."""

from __future__ import annotations

import logging

from waitress.server import create_server

from bincount import inference
from bincount.serving.app import create_app

log = logging.getLogger(__name__)


def make_server(model: inference.Model, host: str, port: int, threads: int):
    """A bound waitress server (port 0 picks a free one: `server.effective_port`)."""
    limits = inference.settings()["limits"]
    return create_server(
        create_app(model),
        host=host,
        port=port,
        threads=threads,
        # Bodies a little over the limit reach the app, which answers 413 in JSON.
        max_request_body_size=2 * int(limits["max_body_bytes"]),
        ident="bincount",
        clear_untrusted_proxy_headers=True,
    )


def serve(model: inference.Model, host: str, port: int, threads: int) -> None:
    try:
        server = make_server(model, host, port, threads)
    except OSError as e:
        from bincount.errors import BincountError

        raise BincountError(f"cannot listen on {host}:{port} ({e}): pick another --port") from None
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
