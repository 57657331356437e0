"""Batch prediction: images from files, folders, CSV lists or s3 prefixes -> predictions.csv.

Inputs:
- an image file (.jpg, .jpeg, .png, .webp, .bmp, .gif, .tif, .tiff), or a folder of them
  (searched recursively; its other files are counted and named as left out, never silently);
- a CSV with a `path` column (relative paths are relative to the CSV) and any other columns,
  e.g. an expected quantity (`--expected-column`) and the true count (`--truth-column`);
- `s3://bucket/prefix`: every image object under the prefix (honours $AWS_ENDPOINT_URL).

Every image goes through `bincount.inference` (or a SageMaker endpoint); an image that cannot
be read gets its error in the `error` column and the rest carry on. Every local file is read
through `bincount.fileio.read_input`: regular files only, at most its size cap (a CSV list
naming `/dev/zero` is one error row, not a full memory).
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bincount import inference
from bincount.errors import BincountError
from bincount.fileio import (
    MAX_INPUT_ENV,
    atomic_write_text,
    check_output,
    max_input_bytes,
    read_input,
    read_input_text,
)
from bincount.inference import verdicts
from bincount.settings import settings

# Every suffix a photo may have: the decoder says which formats it reads (an error row names
# the others), so no photo of a folder is left out without a word.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class Item:
    source: str
    read: Callable[[], bytes]
    columns: dict[str, str] = field(default_factory=dict)


def _file(path: Path, columns: dict | None = None) -> Item:
    return Item(str(path), lambda: read_input(path, "image"), dict(columns or {}))


def _csv_items(path: Path) -> Iterator[Item]:
    text = read_input_text(path, "CSV list")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = reader.fieldnames
        if not fields or "path" not in fields:
            raise BincountError(
                f"{path} has no `path` column (columns: {fields}): "
                "a CSV of images needs one, with the image file of each row"
            )
        rows = list(reader)
    except csv.Error as e:
        raise BincountError(
            f"{path} is not a readable CSV (line {reader.line_num}: {e}): write one row per "
            "image, with a `path` column"
        ) from None
    for n, row in enumerate(rows, 2):
        given = row.get("path")
        if not isinstance(given, str) or not given.strip() or "\0" in given:
            raise BincountError(
                f"{path} line {n}: no usable image path in the `path` column (empty, or with "
                "a NUL byte): give one on every row"
            )
        columns = {k: v for k, v in row.items() if isinstance(k, str) and isinstance(v, str)}
        image = Path(given.strip()).expanduser()
        yield _file(image if image.is_absolute() else path.parent / image, columns)


def _s3_items(uri: str) -> Iterator[Item]:
    import boto3

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise BincountError(f"{uri} has no bucket: use s3://BUCKET/PREFIX")
    client = boto3.client("s3")
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    except Exception as e:  # botocore's errors: no credentials, no such bucket, no network
        raise BincountError(f"cannot list {uri} ({e}): check the URI and your AWS access") from None
    for key in sorted(keys):
        if key.lower().endswith(IMAGE_SUFFIXES):

            def read(key=key) -> bytes:
                cap = max_input_bytes()
                data = client.get_object(Bucket=bucket, Key=key)["Body"].read(cap + 1)
                if len(data) > cap:
                    raise BincountError(
                        f"s3://{bucket}/{key} is larger than the limit of {cap} bytes "
                        f"({MAX_INPUT_ENV}): leave it out, or raise the limit"
                    )
                return data

            yield Item(f"s3://{bucket}/{key}", read)


def _folder_items(folder: Path, skipped: list[str]) -> list[Item]:
    """The photos of a folder (recursively); its other files are noted in `skipped`."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    photos = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    others = Counter(p.suffix.lower() or "(no suffix)" for p in files if p not in set(photos))
    if others:
        kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(others.items()))
        skipped.append(
            f"{folder}: left out {sum(others.values())} files that are not photos ({kinds})"
        )
    return [_file(p) for p in photos]


def collect(inputs: list[str], skipped: list[str] | None = None) -> list[Item]:
    """The images named by files, folders, CSV lists and s3 prefixes, in order; what a folder
    held besides photos is noted in `skipped` (a line per folder)."""
    skipped = [] if skipped is None else skipped
    items: list[Item] = []
    for given in inputs:
        if str(given).startswith("s3://"):
            found = list(_s3_items(given))
        else:
            path = Path(given).expanduser()
            if not path.exists():
                raise BincountError(
                    f"{path} does not exist: give an image, a folder, a CSV or s3://"
                )
            if path.is_dir():
                found = _folder_items(path, skipped)
            elif path.suffix.lower() == ".csv":
                found = list(_csv_items(path))
            else:
                found = [_file(path)]
        if not found:
            raise BincountError(f"no images in {given} (looked for {', '.join(IMAGE_SUFFIXES)})")
        items.extend(found)
    return items


def check_column(items: list[Item], column: str | None) -> None:
    """Every item's expected quantity parses (before any model is loaded)."""
    for item in items:
        _expected(item, column)


def _expected(item: Item, column: str | None) -> int | None:
    if not column:
        return None
    if column not in item.columns:
        raise BincountError(
            f"--expected-column {column!r} is not a column of the input "
            f"(columns: {sorted(item.columns) or 'none: give a CSV with a path column'})"
        )
    return inference.parse_expected(item.columns[column], f"{item.source}: {column}")


def _read(item: Item, limits: dict) -> bytes:
    try:
        data = item.read()
    except BincountError as e:  # fileio: not a regular file, over the size cap
        raise inference.InputError(str(e)) from None
    except OSError as e:
        raise inference.InputError(f"cannot read {item.source} ({e})") from None
    except Exception as e:  # botocore errors for s3 objects
        raise inference.InputError(f"cannot fetch {item.source} ({e})") from None
    return inference.check_image(data, limits, item.source)


def predict_local(model: inference.Model, items: list[Item], expected_column, batch_size=16):
    """One answer dict (or {"error": ...}) per item, batched through `inference`."""
    limits = settings()["limits"]
    answers: list[dict] = [{} for _ in items]
    pending: list[int] = []
    blobs: list[bytes] = []

    def flush() -> None:
        if not pending:
            return
        request = inference.Request(
            blobs[:],
            [_expected(items[i], expected_column) for i in pending],
            batch=True,
            names=[items[i].source for i in pending],
        )
        try:
            results = inference.predict_fn(request, model)["predictions"]
        except inference.InputError:  # one broken image: answer the chunk one by one
            results = []
            for i, blob in zip(pending, blobs, strict=True):
                single = inference.Request(
                    [blob], request.expected[len(results) : len(results) + 1]
                )
                single.names = [items[i].source]
                try:
                    results.append(inference.predict_fn(single, model))
                except inference.InputError as e:
                    results.append({"error": str(e)})
        for i, answer in zip(pending, results, strict=True):
            answers[i] = answer
        pending.clear()
        blobs.clear()

    check_column(items, expected_column)  # a bad expected value stops the run before any work
    for i, item in enumerate(items):
        try:
            blobs.append(_read(item, limits))
            pending.append(i)
        except inference.InputError as e:
            answers[i] = {"error": str(e)}
        if len(pending) >= batch_size:
            flush()
    flush()
    return answers


def predict_endpoint(invoke: Callable[[bytes], dict], items: list[Item], expected_column):
    """One answer per item from a deployed endpoint (`invoke(json_body) -> answer`)."""
    import base64
    import json

    limits = settings()["limits"]
    answers = []
    for item in items:
        try:
            body = {"image": base64.b64encode(_read(item, limits)).decode("ascii")}
            expected = _expected(item, expected_column)
            if expected is not None:
                body["expected"] = expected
            answers.append(invoke(json.dumps(body).encode()))  # or {"error": its refusal}
        except inference.InputError as e:  # a bad image here; any other error stops the run
            answers.append({"error": str(e)})
    return answers


def write_csv(path: str | os.PathLike, items: list[Item], answers: list[dict], counts) -> Path:
    """predictions.csv: the input's columns, then the predicted count, the probabilities, the
    verdict and any error."""
    extra = [c for c in dict.fromkeys(k for it in items for k in it.columns) if c != "path"]
    fields = ["source", *extra, "predicted", "confidence", "mean_count"]
    fields += [f"p_{c}" for c in counts]
    fields += [*(["expected"] if "expected" not in extra else []), "p_expected", "verdict", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for item, answer in zip(items, answers, strict=True):
        row = {"source": item.source, **{k: v for k, v in item.columns.items() if k in extra}}
        row.update({k: v for k, v in answer.items() if k in fields and k not in extra})
        if "count" in answer:
            row["predicted"] = answer["count"]
        for c, p in answer.get("probabilities", {}).items():
            row[f"p_{c}"] = p
        writer.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def verdict_table(items: list[Item], answers: list[dict], truth_column: str | None) -> dict:
    """How the verdicts split; with the true counts, the precision of the mismatch flags."""
    done = [(it, a) for it, a in zip(items, answers, strict=True) if "verdict" in a]
    table: dict = {v: sum(a["verdict"] == v for _, a in done) for v in verdicts.VERDICTS}
    table["orders"] = len(done)
    if truth_column and done:
        if truth_column not in done[0][0].columns:
            raise BincountError(f"--truth-column {truth_column!r} is not a column of the input")
        wrong = [int(it.columns[truth_column]) != a["expected"] for it, a in done]
        table.update(verdicts.evaluate([a["verdict"] for _, a in done], wrong))
    return table


@dataclass
class Predictions:
    """What `predict` did: the inputs, one answer each, the CSV written, and with expected
    quantities the table of verdicts (`verdict_table`)."""

    items: list[Item]
    answers: list[dict]
    path: Path
    table: dict | None = None
    skipped: list[str] = field(default_factory=list)  # what folders held besides photos

    @property
    def errors(self) -> int:
        return sum("error" in a for a in self.answers)


def predict(
    model: str | None,
    inputs: list[str],
    output: str | os.PathLike,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    expected: int | None = None,
    expected_column: str | None = None,
    truth_column: str | None = None,
    backend: str | None = None,
    batch_size: int = 16,
) -> Predictions:
    """Predict every image of `inputs` with a local model (a run folder, checkpoint or ONNX
    export) or a deployed `endpoint`, and write one row per image to `output`. `expected`
    (one quantity for every image) or `expected_column` (a CSV column) give each image a
    verdict; the true counts (`truth_column`, default: a `count` column) score them."""
    if expected is not None and expected_column:
        raise BincountError("give --expected or --expected-column, not both")
    if not inputs:
        raise BincountError("no inputs: bincount predict MODEL PATH [PATH ...]")
    check_output(output, "-o")  # before any model loads: a folder or a device is refused
    skipped: list[str] = []
    items = collect(inputs, skipped)
    column = expected_column
    if expected is not None:
        column = "expected"
        for item in items:
            item.columns["expected"] = str(expected)
    check_column(items, column)
    if endpoint:
        from bincount.sagemaker.launch.deploy import endpoint_invoker

        invoke = endpoint_invoker(endpoint, region)  # no credentials: one error here
        answers = predict_endpoint(invoke, items, column)
        counts = sorted({int(c) for a in answers for c in a.get("probabilities", {})})
    else:
        loaded = inference.model_fn(model, backend=backend)
        answers = predict_local(loaded, items, column, batch_size)
        counts = loaded.counts
    path = write_csv(output, items, answers, counts)
    table = None
    if column:
        truth = truth_column
        if truth is None and items and "count" in items[0].columns:
            truth = "count"
        table = verdict_table(items, answers, truth)
    return Predictions(items, answers, path, table, skipped)
