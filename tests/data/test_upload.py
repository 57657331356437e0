"""upload against a real S3 API server (moto) on 127.0.0.1, with real images of ../shared/abid."""

from __future__ import annotations

import hashlib
import json
import shutil

import boto3
import pytest

from bincount.cli import main
from bincount.data import fetch, layout, manifest, sources, upload
from bincount.errors import BincountError


@pytest.fixture
def dataset(tiny_source, tmp_path):
    """A writable copy of 40 real images in the bucket layout."""
    return shutil.copytree(tiny_source, tmp_path / "abid")


def objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    client = boto3.client("s3")
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def local_files(folder) -> dict[str, bytes]:
    return {
        f"{d}/{p.name}": p.read_bytes()
        for d in ("bin-images", "metadata")
        for p in sorted((folder / d).iterdir())
    }


def test_upload_copies_the_folder_then_skips_what_is_unchanged(dataset, make_bucket, fault_proxy):
    bucket = make_bucket({}, public=False)
    proxy = fault_proxy()  # counts the requests that really reach the server
    dest = f"s3://{bucket}/abid"
    first = upload.upload(dataset, dest, echo=lambda s: None)
    assert len(first.uploaded) == 80 and not first.skipped
    assert objects(bucket, "abid/") == {f"abid/{k}": v for k, v in local_files(dataset).items()}
    puts = proxy.methods["PUT"]
    assert puts == 80

    again = upload.upload(dataset, dest)
    assert again.uploaded == [] and len(again.skipped) == 80
    assert proxy.methods["PUT"] == puts  # not one object sent again

    # Same size, other bytes: the checksum tells them apart.
    meta = dataset / "metadata" / sorted(p.name for p in (dataset / "metadata").iterdir())[0]
    text = meta.read_bytes()
    meta.write_bytes(text.replace(b"EXPECTED_QUANTITY", b"EXPECTED_QUANTITZ"))
    changed = upload.upload(dataset, dest)
    assert changed.uploaded == [f"metadata/{meta.name}"]
    assert objects(bucket, f"abid/metadata/{meta.name}")[f"abid/metadata/{meta.name}"] == (
        meta.read_bytes()
    )


def test_dry_run_lists_and_changes_nothing(dataset, make_bucket, capsys):
    bucket = make_bucket({}, public=False)
    code = main(["data", "upload", str(dataset), f"s3://{bucket}/x", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert objects(bucket) == {}
    lines = [line for line in out.splitlines() if line.startswith("upload ")]
    assert len(lines) == 80 and f"s3://{bucket}/x/bin-images/" in out
    assert "would upload 80 files" in out

    upload.upload(dataset, f"s3://{bucket}/x")
    main(["data", "upload", str(dataset), f"s3://{bucket}/x", "--dry-run"])
    out = capsys.readouterr().out
    assert out.count("skip ") == 80 and "would upload 0 files" in out


def test_split_channels_from_a_manifest_are_data_sources(dataset, make_bucket, tmp_path):
    path, rows = manifest.load_or_build(
        dataset, tmp_path / "cache", [1, 2, 3, 4, 5], (0.6, 0.2, 0.2), 0
    )
    bucket = make_bucket({}, public=False)
    report = upload.upload(dataset, f"s3://{bucket}/splits", manifest_csv=path)
    assert len(report.uploaded) == 2 * len(rows) + 3 + 1  # files, 3 file lists, the manifest
    stored = objects(bucket, "splits/")
    assert stored["splits/manifest.csv"] == path.read_bytes()
    for split in manifest.SPLITS:
        want = sorted(r.id for r in rows if r.split == split)
        listing = json.loads(stored[f"splits/{split}/file_list.json"])
        assert sorted(layout.parse_file_list(listing, split)) == want
        for i in want:
            assert (
                stored[f"splits/{split}/bin-images/{i}.jpg"]
                == (dataset / "bin-images" / f"{i}.jpg").read_bytes()
            )
    # A channel is a source in the bucket layout: fetch reads it back whole.
    store = sources.open_store(f"s3://{bucket}/splits/val")
    got = fetch.fetch(store, tmp_path / "val", ids=[r.id for r in rows if r.split == "val"])
    assert not got.missing and len(got.complete) == sum(r.split == "val" for r in rows)


def test_upload_errors_say_what_to_do(dataset, s3env, monkeypatch, tmp_path, capsys):
    with pytest.raises(BincountError, match="bucket does not exist"):
        upload.upload(dataset, "s3://no-such-bucket-x/abid")
    assert main(["data", "upload", str(tmp_path / "nothing"), "s3://b-ok/x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BincountError, match="no AWS credentials"):
        upload.upload(dataset, "s3://some-bucket/abid")
    bad = tmp_path / "other.csv"
    bad.write_text("id,count,split\n99999999,1,train\n")
    with pytest.raises(BincountError, match="not in"):
        upload.upload(dataset, "s3://some-bucket/abid", manifest_csv=bad)


def test_objects_whose_etag_is_not_the_md5_are_compared_by_their_md5_metadata(dataset, make_bucket):
    """Multipart (or KMS-encrypted) objects have ETags that are not MD5s."""
    bucket = make_bucket({}, public=False)
    client = boto3.client("s3")
    meta = sorted((dataset / "metadata").iterdir())[:2]
    for path, keep_md5 in zip(meta, (True, False), strict=True):
        data = path.read_bytes()
        extra = {"Metadata": {"md5": hashlib.md5(data).hexdigest()}} if keep_md5 else {}
        key = f"x/metadata/{path.name}"
        mpu = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
        part = client.upload_part(
            Bucket=bucket, Key=key, UploadId=mpu["UploadId"], PartNumber=1, Body=data
        )
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=mpu["UploadId"],
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
        assert "-" in client.head_object(Bucket=bucket, Key=key)["ETag"]
    report = upload.upload(dataset, f"s3://{bucket}/x")
    assert f"metadata/{meta[0].name}" in report.skipped  # same bytes, said by its md5
    assert f"metadata/{meta[1].name}" in report.uploaded  # no way to tell: sent again
    assert len(report.uploaded) == 79
