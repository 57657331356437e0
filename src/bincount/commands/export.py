"""`bincount export MODEL --format onnx`: model.onnx + model.json (preprocessing)."""

from __future__ import annotations

import argparse


def register(sub) -> dict:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (for `serve|predict --backend onnx`)",
        description="Write model.onnx and model.json (preprocessing, counts, version) to "
        "<run>/onnx/ (or -o),  then check on real images that onnxruntime and PyTorch agree.",
    )
    p.add_argument("model", metavar="MODEL", help="a run folder or a checkpoint")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only one)")
    p.add_argument("-o", "--output", help="folder to write to (default <run>/onnx)")
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old spelling
    p.add_argument(
        "--check", nargs="*", metavar="IMAGE", help="images for the parity check (default: none)"
    )
    return {"export": p}


def run(args) -> int:
    from pathlib import Path

    from bincount.errors import BincountError
    from bincount.fileio import check_input

    check_input(args.model, "MODEL", folder_ok=True)
    images = [Path(p) for p in args.check or []]
    for image in images:  # before torch loads and the export runs, which take a while
        if not image.is_file():
            raise BincountError(
                f"--check {image}: no such image file: give photos that exist, e.g. "
                "../shared/abid/bin-images/01843.jpg"
            )
    if args.output:
        out = Path(args.output)
        if out.exists() and not out.is_dir():
            raise BincountError(
                f"-o {out} is not a folder: give a folder for model.onnx and model.json "
                "(a new path or a folder)"
            )
    from bincount.export import export_onnx, parity

    path = export_onnx(args.model, args.output)
    print(f"wrote {path} and {path.with_name('model.json')}")
    if args.check:
        diff = parity(args.model, path, images)
        print(f"parity on {len(args.check)} images: max |p_torch - p_onnx| = {diff:.2e}")
    return 0
