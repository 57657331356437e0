"""The Flask app: the container contract (`GET /ping`, `POST /invocations`) and the page.

`POST /invocations` takes what `inference.input_fn` takes; `?expected=3` (or SageMaker's
`X-Amzn-SageMaker-Custom-Attributes: expected=3`) adds a verdict to every image. Every error is
a JSON body `{"error": "..."}` with a 4xx status (5xx only for a fault of the server itself).
Every request gets one access line (`bincount.serving.accesslog`).
"""

from __future__ import annotations

import logging
import time
from importlib import resources

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from bincount import inference
from bincount.serving import accesslog, memory
from bincount.settings import settings

log = logging.getLogger(__name__)

# After a request whose images claim this many pixels or more, hand the memory its decoding
# freed back to the OS (glibc keeps it otherwise: README, "Serving").
RELEASE_AFTER_PIXELS = 4_000_000


def too_large(max_body_bytes: int) -> str:
    """The 413 message of a body over the limit (the app's and waitress's alike)."""
    return (
        f"the body is larger than {max_body_bytes} bytes "
        "(limits.max_body_bytes in conf/serve.yaml): send a smaller image"
    )


def custom_attributes(header: str | None) -> dict[str, str]:
    """`key=value` pairs of SageMaker's CustomAttributes header (`expected=3;other=x`)."""
    out = {}
    for part in (header or "").replace(",", ";").split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def create_app(model: inference.Model) -> Flask:
    limits = settings()["limits"]
    app = Flask("bincount")
    app.config["MAX_CONTENT_LENGTH"] = int(limits["max_body_bytes"])
    page = resources.files("bincount.serving").joinpath("page.html").read_text("utf-8")

    @app.before_request
    def started():
        g.started = time.monotonic()

    @app.after_request
    def log_access(response: Response) -> Response:
        ms = (time.monotonic() - g.get("started", time.monotonic())) * 1000
        path = request.full_path.rstrip("?")
        size = response.content_length or 0
        accesslog.access(
            request.method, path, response.status_code, size, ms, **g.get("outcome", {})
        )
        return response

    @app.get("/ping")
    def ping():
        return jsonify(status="ok", model=model.info)

    @app.post("/invocations")
    def invocations():
        accept = request.headers.get("Accept")
        inference.check_accept(accept)
        body = request.get_data(cache=False)
        data = inference.input_fn(body, request.content_type)
        attributes = custom_attributes(request.headers.get("X-Amzn-SageMaker-Custom-Attributes"))
        expected = request.args.get("expected", attributes.get("expected"))
        data = inference.with_expected(data, expected)
        try:
            prediction = inference.predict_fn(data, model)
        finally:
            if data.pixels >= RELEASE_AFTER_PIXELS:
                memory.release()
        if "predictions" in prediction:
            g.outcome = {"counts": [p["count"] for p in prediction["predictions"]]}
        else:
            g.outcome = {"count": prediction["count"]}
        return Response(inference.output_fn(prediction, accept), mimetype="application/json")

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.errorhandler(inference.InputError)
    def bad_input(e: inference.InputError):
        g.outcome = {"error": str(e)}
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        message = e.description
        if e.code == 413:
            message = too_large(int(limits["max_body_bytes"]))
        g.outcome = {"error": message}
        return jsonify(error=message), e.code

    @app.errorhandler(Exception)
    def fault(e: Exception):
        log.exception("invocation failed")
        message = f"internal error ({type(e).__name__}): see the server log"
        g.outcome = {"error": message}
        return jsonify(error=message), 500

    return app
