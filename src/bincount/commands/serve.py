"""`bincount serve MODEL`: the local server (container contract + upload page)."""

from __future__ import annotations

from bincount.argtypes import positive_int
from bincount.serving.accesslog import FORMATS


def register(sub) -> dict:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP: POST /invocations, GET /ping, an upload page at /",
        description="Serve a run folder, checkpoint or ONNX export like a SageMaker endpoint: "
        "POST an image to /invocations (?expected=N for a verdict), open / in a browser. "
        "Defaults come from conf/serve.yaml. Every request gets an access line on stderr. "
        "Exposed beyond localhost (--host 0.0.0.0), put a reverse proxy in front.",
    )
    p.add_argument("model", metavar="MODEL", help="a run folder or a checkpoint (or ONNX export)")
    p.add_argument("--host", help="address to listen on (127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, help="port, 1-65535 or 0 for a free one (8080)")
    p.add_argument(
        "--backend", choices=("torch", "onnx"), help="torch, or onnx (`bincount export` first)"
    )
    p.add_argument("--threads", type=positive_int, help="requests handled at once (4)")
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        help="text lines, or JSON lines for log shippers (log.format: text)",
    )
    return {"serve": p}


def run(args) -> int:
    from bincount.errors import BincountError
    from bincount.serving import accesslog
    from bincount.serving.listen import listen
    from bincount.settings import settings

    conf = settings()
    logs = conf.get("log", {})
    accesslog.configure(
        args.log_format or logs.get("format", "text"), logs.get("queue_warning_every", 60)
    )
    threads = conf["threads"] if args.threads is None else args.threads
    if threads < 1:
        raise BincountError(f"--threads {threads} must be at least 1, e.g. --threads 4")
    host = args.host or conf["host"]
    # Bound before the model loads: a busy port or a bad address fails at once.
    sock = listen(host, conf["port"] if args.port is None else args.port)
    try:
        from bincount import inference
        from bincount.serving.server import serve

        model = inference.model_fn(args.model, backend=args.backend or conf["backend"])
        if not model.info["calibrated"]:
            print(
                f"note: {args.model} is not calibrated: verdicts will be `unsure` until you "
                f"run `bincount calibrate {args.model}`",
                flush=True,
            )
        serve(model, host=host, port=sock.getsockname()[1], threads=threads, sock=sock)
    finally:
        sock.close()
    return 0
