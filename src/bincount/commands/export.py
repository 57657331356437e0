"""`bincount export RUN_OR_CKPT --format onnx`: model.onnx + model.json (preprocessing)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (for `serve|predict --backend onnx`)",
        description="Write model.onnx and model.json (preprocessing, counts, version) to "
        "<run>/onnx/ (or --out), then check on real images that onnxruntime and PyTorch agree.",
    )
    p.add_argument("model", metavar="RUN_OR_CKPT")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", help="folder to write to (default <run>/onnx)")
    p.add_argument(
        "--check", nargs="*", metavar="IMAGE", help="images for the parity check (default: none)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from bincount.export import export_onnx, parity

    path = export_onnx(args.model, args.out)
    print(f"wrote {path} and {path.with_name('model.json')}")
    if args.check:
        diff = parity(args.model, path, [Path(p) for p in args.check])
        print(f"parity on {len(args.check)} images: max |p_torch - p_onnx| = {diff:.2e}")
    return 0
