"""S3 access: URIs, clients (unsigned by default), and a store over a bucket prefix (the local
cache behind `data.source=s3://...` is `sources.cached_source`).

The public bucket `s3://aft-vbi-pds` is read without credentials (botocore's UNSIGNED).
`AWS_ENDPOINT_URL` is honoured (boto3 reads it), so the same code talks to any S3 API server.
Signed requests are used for private buckets: on request (`signed=True`), or automatically
(`signed=None`) when the bucket refuses anonymous reads and credentials are configured.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from bincount.data.retry import with_retries
from bincount.data.stores import Missing, Transient, ids_from_names
from bincount.errors import BincountError

DEFAULT_SOURCE = "s3://aft-vbi-pds"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9!_.*'()=+-]+$")
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestThrottled",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of `s3://bucket[/prefix]`."""
    hint = "write it as s3://BUCKET or s3://BUCKET/PREFIX (e.g. s3://aft-vbi-pds)"
    if not str(uri).startswith("s3://"):
        raise BincountError(f"{uri!r} is not an s3 URI: {hint}")
    bucket, _, prefix = str(uri)[5:].partition("/")
    if not _BUCKET.match(bucket):
        raise BincountError(f"{uri!r}: {bucket!r} is not a valid bucket name: {hint}")
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") or not _PREFIX_PART.match(p) for p in parts):
        raise BincountError(
            f"{uri!r}: the prefix {prefix!r} has empty, '.', '..' or unusual parts: {hint}"
        )
    return bucket, prefix


def canonical(uri: str) -> str:
    """`s3://bucket/prefix` without a trailing slash: one spelling per place."""
    bucket, prefix = parse_uri(uri)
    return f"s3://{bucket}" + (f"/{prefix}" if prefix else "")


def join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def region(session, bucket: str | None = None) -> str:
    """The public dataset's region for its bucket, else the environment's or profile's."""
    if bucket == "aft-vbi-pds":
        return "us-east-1"
    return os.environ.get("AWS_REGION") or session.region_name or "us-east-1"


def has_credentials() -> bool:
    import boto3

    return boto3.session.Session().get_credentials() is not None


def client(signed: bool = False, pool: int = 10, attempts: int = 1, bucket: str | None = None):
    """An S3 client (for `bucket`'s region); `attempts` > 1 lets botocore retry throttling and
    5xx itself."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    for name in ("botocore", "boto3", "urllib3"):  # their INFO lines are noise to a user
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    config = Config(
        signature_version=None if signed else UNSIGNED,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        max_pool_connections=max(pool, 10),
        connect_timeout=10,
        read_timeout=60,
    )
    session = boto3.session.Session()
    return session.client("s3", region_name=region(session, bucket), config=config)


def error_code(e: Exception) -> tuple[str, int]:
    response = getattr(e, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def translate(e: Exception, where: str) -> Exception:
    """The stores' exception for a botocore failure on `where` (an s3:// URI)."""
    from botocore import exceptions as bx

    if isinstance(e, bx.NoCredentialsError | bx.PartialCredentialsError):
        return BincountError(
            f"no AWS credentials for a signed request to {where}: configure them (aws "
            "configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or read a "
            "public bucket without --signed"
        )
    if isinstance(e, bx.ConnectionError | bx.HTTPClientError | bx.IncompleteReadError):
        return Transient(f"{where}: {e}")
    if not isinstance(e, bx.ClientError):
        return BincountError(f"{where}: {e}")
    code, status = error_code(e)
    if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
        return Missing("not found")
    if code == "NoSuchBucket":
        return BincountError(f"{where}: the bucket does not exist: check the s3:// URI")
    if code in _THROTTLED or status >= 500 or status == 429:
        return Transient(f"{where}: {code or status}")
    if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
        return Missing("access denied")
    return BincountError(
        f"{where}: S3 answered {code or status} ({e}): check the URI, credentials "
        "(--signed) and AWS_ENDPOINT_URL"
    )


def check_md5(data: bytes, etag: str | None, where: str) -> None:
    """A single-part object's ETag is the MD5 of its bytes: a mismatch is a damaged transfer."""
    match = _MD5_ETAG.match(etag or "")
    if match and hashlib.md5(data).hexdigest() != match[1]:
        raise Transient(f"{where}: body does not match its ETag (damaged in transit)")


class S3Store:
    """The keys under `s3://bucket/prefix/` (see stores.Store)."""

    def __init__(self, uri: str, signed: bool | None = None, pool: int = 16):
        self.bucket, self.prefix = parse_uri(uri)
        self.description = canonical(uri)
        self.signed = bool(signed)
        self.auto = signed is None
        self._switch = threading.Lock()
        self.pool = pool
        self.client = client(self.signed, pool, bucket=self.bucket)
        self.listable = self._preflight()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{join(self.prefix, key)}"

    def _call(self, where: str, fn, **kwargs):
        try:
            return fn(**kwargs)
        except Exception as e:
            raise translate(e, where) from None

    def _sign_instead(self) -> bool:
        """In auto mode, after anonymous access was refused: switch to signed requests if
        credentials exist (once); True if it did."""
        with self._switch:
            if not self.auto or self.signed or not has_credentials():
                return False
            self.client = client(True, self.pool, bucket=self.bucket)
            self.signed, self.auto = True, False
            return True

    def _preflight(self) -> bool:
        """Check the bucket answers; True if it can be listed."""

        def probe():
            return self._call(
                self.description,
                self.client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=join(self.prefix, "metadata/"),
                MaxKeys=1,
            )

        try:
            with_retries(probe, attempts=3)
        except Missing:  # listing refused
            return self._preflight() if self._sign_instead() else False
        except Transient as e:
            endpoint = os.environ.get("AWS_ENDPOINT_URL", "the AWS S3 endpoint")
            raise BincountError(
                f"cannot reach {self.description} at {endpoint} ({e}): check the network "
                "and AWS_ENDPOINT_URL, then run again"
            ) from None
        return True

    def get(self, key: str) -> bytes:
        used = self.client
        try:
            return self._get(used, key)
        except Missing as e:
            # Refused anonymously: sign (or another thread just did) and ask once more.
            if str(e) == "access denied" and (self._sign_instead() or self.client is not used):
                return self._get(self.client, key)
            raise

    def _get(self, s3client, key: str) -> bytes:
        where = self.uri(key)
        try:
            response = s3client.get_object(Bucket=self.bucket, Key=join(self.prefix, key))
            data = response["Body"].read()
        except Exception as e:
            raise translate(e, where) from None
        if len(data) != response.get("ContentLength", len(data)):
            raise Transient(f"{where}: got {len(data)} of {response['ContentLength']} bytes")
        check_md5(data, response.get("ETag"), where)
        return data

    def metadata_ids(self, refused: list[str]) -> Iterator[str]:
        if not self.listable:
            raise BincountError(
                f"{self.description} cannot be listed anonymously: pass --signed with "
                "credentials that may list it, or give the ids with --file-list"
            )
        return ids_from_names(self._names(join(self.prefix, "metadata/")), refused)

    def _names(self, prefix: str) -> Iterator[str]:
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = with_retries(
                lambda k=kwargs: self._call(prefix, self.client.list_objects_v2, **k)
            )
            for obj in page.get("Contents", []):
                yield obj["Key"][len(prefix) :]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return


def public_read_policy(bucket: str) -> str:
    """A bucket policy that lets anyone list and read `bucket`, as the public dataset's does
    (for a test or benchmark bucket that stands in for it)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
    )


def seed_file_list() -> bytes:
    """The seed project's id list (10,441 ids of counts 1..5), shipped in the package."""
    return resources.files("bincount").joinpath("resources/file_list.json").read_bytes()


def cache_folder(uri: str, cache_dir: Path) -> Path:
    bucket, prefix = parse_uri(uri)
    return Path(cache_dir) / "s3" / bucket / prefix
