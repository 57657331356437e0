"""`bincount serve RUN_OR_CKPT`: the local server (container contract + upload page)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP: POST /invocations, GET /ping, an upload page at /",
        description="Serve a run folder, checkpoint or ONNX export like a SageMaker endpoint: "
        "POST an image to /invocations (?expected=N for a verdict), open / in a browser. "
        "Defaults come from conf/serve.yaml.",
    )
    p.add_argument("model", metavar="RUN_OR_CKPT", help="run folder, .ckpt, or ONNX export")
    p.add_argument("--host", help="address to listen on (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, help="port (8080, the container contract's)")
    p.add_argument("--backend", choices=("torch", "onnx"), help="onnx: `bincount export` first")
    p.add_argument("--threads", type=int, help="requests handled at once")
    p.set_defaults(func=run)


def run(args) -> int:
    from bincount import inference
    from bincount.serving.server import serve

    conf = inference.settings()
    model = inference.model_fn(args.model, backend=args.backend or conf["backend"])
    if not model.info["calibrated"]:
        print(
            f"note: {args.model} is not calibrated: verdicts will be `unsure` until you run "
            f"`bincount calibrate {args.model}`",
            flush=True,
        )
    serve(
        model,
        host=args.host or conf["host"],
        port=conf["port"] if args.port is None else args.port,
        threads=args.threads or conf["threads"],
    )
    return 0
