"""`bincount data fetch|describe|upload`: get the images, know what you have, stage it for
SageMaker."""

from __future__ import annotations

import argparse
from pathlib import Path

from bincount.argtypes import counts, positive_int, whole
from bincount.data.s3 import DEFAULT_SOURCE
from bincount.errors import BincountError

FETCH_EXAMPLES = """examples:
  bincount data fetch --to data/abid                            # the seed's 10,441 ids
  bincount data fetch --to data/abid --counts 1-5 --limit 20000 # by count, from metadata
  bincount data fetch --source ../shared/abid --to data/abid    # the seed's ids, from a copy
  bincount data fetch --source ../shared/abid --to data/abid --all   # every image of a copy
"""


def run_fetch(args) -> int:
    from bincount.data import fetch, layout, sources

    if args.file_list and args.all:
        raise BincountError("give --file-list or --all, not both")
    seed_list = not args.file_list and args.counts is None and not args.all
    if args.file_list:
        ids = layout.read_ids(Path(args.file_list))
    elif seed_list:
        ids = sources.seed_ids()
    else:
        ids = None  # every metadata key of the source, filtered by count
    store = sources.open_store(
        args.source, signed=True if args.signed else None, connections=args.concurrency
    )
    report = fetch.fetch(
        store,
        Path(args.to),
        ids=ids,
        counts=args.counts,
        limit=args.limit,
        concurrency=args.concurrency,
        attempts=args.attempts,
        progress=False if args.no_progress else None,
    )
    print(report.summary())
    if seed_list and report.missing:
        print(
            f"note: {len(report.missing)} of the seed's file list ({len(ids)} ids, the default "
            f"without --file-list, --counts or --all) are not in {args.source}: pass --all to "
            "fetch every image the source holds instead"
        )
    return 1 if report.failed else 0


def run_describe(args) -> int:
    from bincount.reports import describe

    out = describe.describe(
        Path(args.folder),
        Path(args.output) if args.output else None,
        file_list=Path(args.file_list) if args.file_list else None,
        manifest_csv=Path(args.manifest) if args.manifest else None,
        counts=args.counts,
        split=tuple(args.split),
        seed=args.seed,
        samples=args.samples,
    )
    print(f"report written: {out} (and {out.with_suffix('.html').name} beside it)")
    return 0


def run_upload(args) -> int:
    from bincount.data import upload

    if not args.unsigned:
        upload.require_credentials(args.dest)
    report = upload.upload(
        Path(args.folder),
        args.dest,
        manifest_csv=Path(args.manifest) if args.manifest else None,
        dry_run=args.dry_run,
        concurrency=args.concurrency,
        signed=not args.unsigned,
    )
    print(report.summary())
    return 0


def register(subparsers) -> dict:
    data = subparsers.add_parser(
        "data",
        help="fetch, describe and upload the bin images",
        description="Get the Amazon Bin images, see what you have, stage them for SageMaker.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    f = sub.add_parser(
        "fetch",
        help="download images and metadata (verified, resumable)",
        description="Download bin images and their metadata into a folder in the bucket's\n"
        "layout. Each file is verified (the JPEG decodes, the JSON has EXPECTED_QUANTITY)\n"
        "before it gets its name; a re-run resumes; missing keys are listed at the end\n"
        "(and in fetch-report.json). Exit code 1 if some files still failed after retries.",
        epilog=FETCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument(
        "--to", default="data/abid", metavar="DIR", help="target folder (default: data/abid)"
    )
    f.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        metavar="URI|DIR",
        help="s3://bucket[/prefix] or a local folder in the bucket layout "
        "(default: s3://aft-vbi-pds, the public bucket)",
    )
    f.add_argument(
        "--file-list",
        metavar="PATH",
        help="ids to fetch: a seed-style file_list.json, a JSON list or one id per line "
        "(default: the seed's 10,441 ids, unless --counts is given)",
    )
    f.add_argument(
        "--all",
        action="store_true",
        help="every image the source holds (its metadata/ listed), not the seed's file list",
    )
    f.add_argument(
        "--counts",
        type=counts,
        metavar="RANGE",
        help="keep only images with these counts, e.g. 1-5; without --file-list, the source's "
        "metadata is listed to find them",
    )
    f.add_argument(
        "--limit", type=positive_int, metavar="N", help="at most N images (the first in order)"
    )
    f.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="N",
        help="parallel requests (default 16)",
    )
    f.add_argument(
        "--attempts",
        type=positive_int,
        default=8,
        metavar="N",
        help="tries per file on throttling, 5xx, dropped connections (default 8)",
    )
    f.add_argument(
        "--signed",
        action="store_true",
        help="sign requests with your AWS credentials (private buckets); by default requests "
        "are anonymous, and signed only if the bucket refuses them and credentials exist",
    )
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser(
        "describe",
        help="counts, sizes, samples, metadata facts and splits, as a report with plots",
        description="Describe a folder in the bucket layout: counts per class, image sizes, "
        "sample images per count, metadata facts and the split sizes, written as PNGs and a "
        "Markdown + HTML report.",
    )
    d.add_argument("folder", help="folder with bin-images/ and metadata/")
    d.add_argument("-o", "--output", help="report folder (default: outputs/describe/<folder name>)")
    d.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old spelling
    d.add_argument("--file-list", metavar="PATH", help="describe only these ids")
    d.add_argument("--manifest", metavar="CSV", help="take the splits from this manifest")
    d.add_argument(
        "--counts",
        type=counts,
        default=[1, 2, 3, 4, 5],
        metavar="RANGE",
        help="counts trained on, for the split table (default 1-5, as data.counts)",
    )
    d.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=[0.6, 0.2, 0.2],
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions (default 0.6 0.2 0.2, as data.split)",
    )
    d.add_argument("--seed", type=whole(0), default=42, help="split seed (default 42, as seed)")
    d.add_argument(
        "--samples", type=whole(0), default=6, help="sample images per count (default 6)"
    )

    u = sub.add_parser(
        "upload",
        help="copy a dataset to your bucket for SageMaker channels",
        description="Copy a local dataset to s3://BUCKET/PREFIX for SageMaker input channels. "
        "Objects already there with the same size and MD5 are skipped.",
    )
    u.add_argument("folder", help="local folder with bin-images/ and metadata/")
    u.add_argument("dest", help="s3://bucket/prefix")
    u.add_argument(
        "--manifest",
        metavar="CSV",
        help="upload the splits of this manifest (data/manifests/*.csv) as DEST/train, "
        "DEST/val, DEST/test (one channel each) instead of the whole folder",
    )
    u.add_argument("--dry-run", action="store_true", help="list what would be done; change nothing")
    u.add_argument(
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="parallel requests (default 8)",
    )
    u.add_argument(
        "--unsigned", action="store_true", help="anonymous requests (a bucket open for writes)"
    )
    return {"data fetch": f, "data describe": d, "data upload": u}
