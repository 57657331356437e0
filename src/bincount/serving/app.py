"""The Flask app: the container contract (`GET /ping`, `POST /invocations`) and the page.

`POST /invocations` takes what `inference.input_fn` takes; `?expected=3` (or SageMaker's
`X-Amzn-SageMaker-Custom-Attributes: expected=3`) adds a verdict to every image. Every error is
a JSON body `{"error": "..."}` with a 4xx status (5xx only for a fault of the server itself).
"""

from __future__ import annotations

import logging
from importlib import resources

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bincount import inference

log = logging.getLogger(__name__)


def custom_attributes(header: str | None) -> dict[str, str]:
    """`key=value` pairs of SageMaker's CustomAttributes header (`expected=3;other=x`)."""
    out = {}
    for part in (header or "").replace(",", ";").split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def create_app(model: inference.Model) -> Flask:
    limits = inference.settings()["limits"]
    app = Flask("bincount")
    app.config["MAX_CONTENT_LENGTH"] = int(limits["max_body_bytes"])
    page = resources.files("bincount.serving").joinpath("page.html").read_text("utf-8")

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
        prediction = inference.predict_fn(data, model)
        return Response(inference.output_fn(prediction, accept), mimetype="application/json")

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.errorhandler(inference.InputError)
    def bad_input(e: inference.InputError):
        return jsonify(error=str(e)), e.status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        message = e.description
        if e.code == 413:
            message = (
                f"the body is larger than {limits['max_body_bytes']} bytes "
                "(limits.max_body_bytes in conf/serve.yaml): send a smaller image"
            )
        return jsonify(error=message), e.code

    @app.errorhandler(Exception)
    def fault(e: Exception):
        log.exception("invocation failed")
        return jsonify(error=f"internal error ({type(e).__name__}): see the server log"), 500

    return app
