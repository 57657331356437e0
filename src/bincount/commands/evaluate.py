"""`bincount evaluate MODEL`: a checkpoint's accuracy, accuracy per count, RMSE, MAE,
off-by-one and confusion matrix on a split of its run, or on any folder in the bucket layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from bincount.argtypes import positive_int

EXAMPLES = """examples:
  bincount evaluate outputs/<run>                                  # the run's test split
  bincount evaluate outputs/<run>/checkpoints/best.ckpt --split val
  bincount evaluate outputs/<run> --split val --tta on             # with flip averaging
  bincount evaluate outputs/<run> --split val --prior uniform      # as if counts were balanced
  bincount evaluate outputs/<run> --data ../shared/abid            # every image of a source
  bincount evaluate outputs/<run> --data ../shared/abid --split test -o /tmp/eval
  bincount evaluate outputs/<a> outputs/<b> outputs/<c> --split val     # an ensemble of three

Without --data the images are a split of the run's own manifest (its config.yaml); with --data
they are the images of that folder (bin-images/, metadata/) whose count the model knows, all of
them or one split (made with the run's split fractions and seed). Writes metrics.json,
predictions.csv (with each count's probability) and confusion.png to <run>/eval/<data>-<split>
unless -o is given. Several models are an ensemble: their probabilities are averaged (each with
its own preprocessing) and the results go to the first's <run>/eval/ensemble-<data>-<split>."""


def _check_data(data: str) -> None:
    """--data names a folder in the bucket layout (or an s3:// source): say so in its terms."""
    from bincount.errors import BincountError

    if data.startswith("s3://"):
        return
    folder = Path(data).expanduser()
    lacking = [f"{d}/" for d in ("bin-images", "metadata") if not (folder / d).is_dir()]
    if not folder.is_dir() or lacking:
        why = "no such folder" if not folder.is_dir() else f"no {' or '.join(lacking)} in it"
        raise BincountError(
            f"--data {data}: {why}: give a folder in the bucket layout (bin-images/<id>.jpg, "
            "metadata/<id>.json), e.g. --data ../shared/abid"
        )


def run(args) -> int:
    from bincount.fileio import check_input
    from bincount.reports import evaluate

    for model in args.model:
        check_input(model, "MODEL", folder_ok=True)
    if args.data:
        _check_data(args.data)
    if args.output and Path(args.output).exists() and not Path(args.output).is_dir():
        from bincount.errors import BincountError

        raise BincountError(
            f"-o {args.output} is not a folder: give a folder for metrics.json, predictions.csv "
            "and confusion.png (a new path or a folder)"
        )

    tta = {"on": "flips", "off": False}.get(args.tta, args.tta)
    ev = evaluate.evaluate(
        args.model if len(args.model) > 1 else args.model[0],
        data=args.data,
        split=args.split,
        batch_size=args.batch_size,
        tta=tta,
        prior=args.prior,
    )
    out = Path(args.output) if args.output else evaluate.default_output(ev, args.data)
    evaluate.write(ev, out)
    print(evaluate.text(ev))
    print(f"written: {out}/metrics.json, predictions.csv, confusion.png")
    return 0


def register(subparsers) -> dict:
    p = subparsers.add_parser(
        "evaluate",
        help="a checkpoint's figures (accuracy, RMSE, confusion matrix...) on a split or a source",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        nargs="+",
        metavar="MODEL",
        help="a run folder or a checkpoint (its best.ckpt); several: their ensemble",
    )
    p.add_argument("--data", help="a folder in the bucket layout (default: the run's own data)")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        help="which split (default: test of the run's data; all of --data)",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (32)")
    p.add_argument(
        "--tta",
        choices=["on", "off", "flips", "dihedral"],
        help="average the 4 flips (on, flips) or the 8 symmetries (dihedral) of each image "
        "(default: as the model was trained)",
    )
    p.add_argument(
        "--prior",
        choices=["train", "uniform", "balanced"],
        help="the prior over counts to answer under (default: as the model was trained, "
        "model.net.prior): uniform divides the training split's count frequencies out (for a "
        "balanced stream of bins), balanced adds the per-count shift fitted on the run's "
        "validation split (fitted now if the model has none), train keeps them",
    )
    p.add_argument("-o", "--output", help="folder for the results")
    return {"evaluate": p}
