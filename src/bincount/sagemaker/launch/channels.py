"""The job's input channels: the data (only the photos the run reads) and the weights.

- `data.source=s3://B/P`: one channel `data`. When the run reads a listed subset of the prefix
  (`data.file_list`, e.g. `data=bucket`: the seed's 10,441 ids of the public bucket's ~536k),
  `sagemaker.data_channel=auto` writes the listed ids' keys (`bin-images/<id>.jpg`,
  `metadata/<id>.json`) into a SageMaker manifest (`S3DataType=ManifestFile`) and the channel
  copies just those (File mode: SageMaker's FastFile takes S3 prefixes only). A prefix channel
  copied in File mode while the run reads a listed subset is refused with the numbers.
- `data.source=[s3://a/b, {path: s3://c/d, squashed: true}]`: one channel each (`data`,
  `data1`, ...); the container rebuilds the list from `BINCOUNT_DATA_CHANNELS`.
- `model.net.weights=PATH|s3://...`: a channel `weights` (a local file is uploaded once, keyed by
  its SHA-256); the container points `model.net.weights` at the file (`BINCOUNT_WEIGHTS_FILE`).

Pure: no SDK, no torch. submit.py creates the channels, uploads and checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bincount.data import layout
from bincount.data.layout import is_s3_uri
from bincount.errors import BincountError

DATA_CHANNEL = "data"
WEIGHTS_CHANNEL = "weights"
CHANNELS_ENV = "BINCOUNT_DATA_CHANNELS"
WEIGHTS_ENV = "BINCOUNT_WEIGHTS_FILE"
# Set when the data channel is a manifest of the listed ids: the channel holds just those, so
# the job reads all of it (data.file_list=null; a local list would not be there anyway).
LISTED_ENV = "BINCOUNT_DATA_LISTED"
# The public bucket: the dataset's images (its registry page: 536,434 bin images).
PUBLIC_BUCKET = "aft-vbi-pds"
PUBLIC_BUCKET_PHOTOS = 536_434
# Bytes one photo takes on the volume (image + metadata), rounded up: ../shared/abid holds
# 193.3 MB for 2,679 (`du -sb bin-images metadata`), 72 kB each.
BYTES_PER_PHOTO = 75_000
# What the volume holds besides the data: the image's layers are elsewhere; the run folder,
# checkpoints, pip's packages and the resized-image cache.
VOLUME_BASE_GB = 30
CHOICES = ("auto", "manifest", "prefix")


@dataclass
class Channel:
    name: str
    uri: str  # the S3 prefix or object; for a manifest, the prefix its keys are under
    data_type: str = "S3Prefix"  # or ManifestFile
    input_mode: str | None = None  # None: the job's input mode
    squashed: bool = False
    keys: list[str] | None = None  # a manifest's keys, relative to `uri`
    manifest_uri: str | None = None  # where the manifest goes (set by submit)
    local_file: Path | None = None  # weights on this machine, uploaded by submit
    photos: int | None = None  # how many photos the run reads from it (None: unknown)

    def manifest_body(self) -> bytes:
        """SageMaker's manifest: [{"prefix": URI}, "relative/key", ...]."""
        prefix = self.uri.rstrip("/") + "/"
        return json.dumps([{"prefix": prefix}, *(self.keys or [])], indent=0).encode()

    def source_uri(self) -> str:
        return self.manifest_uri if self.data_type == "ManifestFile" else self.uri


@dataclass
class Plan:
    channels: list[Channel] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    copied_photos: int = 0  # photos copied onto the volume before training (File mode)

    @property
    def data(self) -> list[Channel]:
        return [c for c in self.channels if c.name != WEIGHTS_CHANNEL]

    def weights(self) -> Channel | None:
        return next((c for c in self.channels if c.name == WEIGHTS_CHANNEL), None)

    def volume_gb(self) -> int:
        """The volume a File-mode copy needs: the photos plus the usual room."""
        return VOLUME_BASE_GB + -(-self.copied_photos * BYTES_PER_PHOTO // 10**9)


def _sources(cfg: DictConfig) -> list[tuple[str, bool]]:
    """(path, squashed) of each element of data.source."""
    setting = OmegaConf.to_container(cfg.data, resolve=True).get("source")
    items = setting if isinstance(setting, list) else [setting]
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append((str(item.get("path")), bool(item.get("squashed", False))))
        else:
            out.append((str(item), False))
    return out


def _not_s3(path: str, many: bool) -> BincountError:
    what = "an element of the data.source list" if many else "data.source"
    return BincountError(
        f"{what} ({path}) is a folder on this machine and a SageMaker job reads its data from "
        "S3: upload it first (`bincount data upload FOLDER s3://BUCKET/PREFIX`) and pass "
        + (
            "the s3:// URI in its place in the list"
            if many
            else "data.source=s3://BUCKET/PREFIX (or sagemaker.data_uri=s3://BUCKET/PREFIX)"
        )
    )


def listed_ids(cfg: DictConfig, uri: str) -> tuple[list[str] | None, str]:
    """The ids the run reads from `uri` (data.file_list restricted to data.counts), and where
    the list came from; (None, why) when this machine cannot know them before the job runs."""
    setting = cfg.data.get("file_list")
    if not setting:
        return None, "no data.file_list: the run reads every photo under the prefix"
    path = Path(str(setting))
    bucket = uri[len("s3://") :].split("/")[0]
    if path.is_file():
        listing, where = json.loads(path.read_text()), str(path)
    elif path.name == layout.FILE_LIST and bucket == PUBLIC_BUCKET:
        from bincount.data.s3 import seed_file_list

        listing, where = json.loads(seed_file_list()), "the seed's file_list.json"
    else:
        return None, f"data.file_list={setting} is read from the channel inside the job"
    counts = {str(c) for c in (cfg.data.get("counts") or [])}
    if isinstance(listing, dict) and counts:
        listing = {k: v for k, v in listing.items() if k in counts}
    return layout.parse_file_list(listing, where), where


def data_plan(cfg: DictConfig, input_mode: str, data_uri: str | None = None) -> Plan:
    """The data channels of the job (checked: refuses copies of more than the run reads)."""
    sm = cfg.sagemaker
    choice = str(sm.get("data_channel") or "auto")
    if choice not in CHOICES:
        raise BincountError(f"sagemaker.data_channel={choice}: use {', '.join(CHOICES)}")
    sources = _sources(cfg)
    many = len(sources) > 1
    if data_uri:
        if many:
            raise BincountError(
                f"data.source lists {len(sources)} sources and sagemaker.data_uri names one: "
                "drop sagemaker.data_uri and put the s3:// URIs in the data.source list (one "
                "channel each), or drop the list"
            )
        sources = [(str(data_uri), False)]
    plan = Plan()
    for i, (path, squashed) in enumerate(sources):
        if not is_s3_uri(path):
            if data_uri:
                raise BincountError(f"sagemaker.data_uri={path} must be an s3:// URI")
            raise _not_s3(path, many)
        uri = path.rstrip("/") + "/"
        channel = Channel(name=DATA_CHANNEL if i == 0 else f"{DATA_CHANNEL}{i}", uri=uri)
        channel.squashed = squashed
        ids, why = listed_ids(cfg, uri) if not many else (None, "a list of sources")
        use_manifest = choice == "manifest" or (choice == "auto" and ids is not None)
        if choice == "manifest" and ids is None:
            raise BincountError(
                f"sagemaker.data_channel=manifest needs the ids before the job runs and {why}: "
                "set data.file_list=PATH (a local list), or sagemaker.data_channel=auto"
            )
        if use_manifest:
            channel.data_type = "ManifestFile"
            channel.input_mode = "File"  # FastFile takes S3 prefixes only
            channel.keys = [
                k
                for i_ in ids
                for k in (f"{layout.IMAGES}/{i_}.jpg", f"{layout.METADATA}/{i_}.json")
            ]
            channel.photos = len(ids)
            plan.copied_photos += len(ids)
            plan.environment[LISTED_ENV] = "1"
        elif input_mode == "File":
            total = PUBLIC_BUCKET_PHOTOS if uri == f"s3://{PUBLIC_BUCKET}/" else None
            if ids is not None:
                held = f"{total:,} photos" if total else "every object under it"
                raise BincountError(
                    f"the channel {uri} in File mode copies {held} onto the volume before "
                    f"training, and the run reads {len(ids):,} of them ({2 * len(ids):,} "
                    "objects): use sagemaker.data_channel=auto (a manifest of those) or "
                    "sagemaker.input_mode=FastFile (streams what is read)"
                )
            if total:
                raise BincountError(
                    f"the channel {uri} in File mode copies all {total:,} photos of the public "
                    f"bucket (~{total * BYTES_PER_PHOTO / 1e9:.0f} GB) before training: set "
                    "data.file_list (e.g. data=bucket) for a manifest of the photos the run "
                    "reads, or sagemaker.input_mode=FastFile"
                )
            plan.warnings.append(
                f"the channel {uri} in File mode copies everything under it before training "
                f"({why}); sagemaker.volume_size_gb must hold it"
            )
        plan.channels.append(channel)
    if many or any(c.squashed for c in plan.channels):
        plan.environment[CHANNELS_ENV] = json.dumps(
            [{"channel": c.name, "squashed": c.squashed} for c in plan.channels]
        )
    return plan


def weights_channel(cfg: DictConfig) -> Channel | None:
    """model.net.weights as a channel: an s3:// object, or a local file (uploaded by submit)."""
    setting = OmegaConf.select(cfg, "model.net.weights")
    if not setting:
        return None
    setting = str(setting)
    if is_s3_uri(setting):
        if setting.endswith("/"):
            raise BincountError(f"model.net.weights={setting} is a prefix: name the weights file")
        return Channel(name=WEIGHTS_CHANNEL, uri=setting, input_mode="File")
    path = Path(setting).expanduser()
    if not path.is_file():
        raise BincountError(
            f"model.net.weights={setting}: no such file on this machine (the launcher uploads it "
            "for the job): give the path of a state dict, or an s3:// URI"
        )
    return Channel(name=WEIGHTS_CHANNEL, uri="", input_mode="File", local_file=path.resolve())


def weights_key(path: Path, prefix: str) -> str:
    """Where a local weights file goes: keyed by its content, so it is uploaded once."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{prefix}/weights/{digest.hexdigest()[:16]}/{path.name}"


def weights_file_name(channel: Channel) -> str:
    return channel.local_file.name if channel.local_file else channel.uri.rsplit("/", 1)[-1]


def needs_model_hub(cfg: DictConfig) -> bool:
    """Whether the job downloads pretrained weights from the model hub at start (conf/model:
    pretrained, no model.net.weights, not an offline efficientnet_lite)."""
    model = OmegaConf.select(cfg, "model.net") or {}
    backbone = str(model.get("backbone", ""))
    return (
        bool(model.get("pretrained", True))
        and not model.get("weights")
        and not backbone.startswith("tf_efficientnet_lite")
    )
