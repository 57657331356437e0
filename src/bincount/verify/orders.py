"""An order stream from the bins' metadata: what a picker states a bin holds, sometimes wrongly.

Each order names a photo and states line items (products with their dimensions, weight and a
quantity each) and a total. A share of the orders carries one picker error, applied to the
STATED order only (never to the photo or the metadata):

    unit_missing   one line states one unit fewer (a line of one unit then disappears)
    unit_extra     one line states one unit more
    line_missing   one line is left out (bins of two or more lines)
    line_foreign   a line that is not in the bin: one unit of a product from another bin

An error that would leave an order empty is never drawn. `Order` carries what the order states
and nothing else; whether it is wrong, which error and the true total live in `Truth`, which is
written to a separate file and which the verifier never reads. Pure Python and numpy: no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

from bincount import jsonsafe
from bincount.errors import BincountError
from bincount.fileio import atomic_write_text, read_input_text

ERRORS = ("unit_missing", "unit_extra", "line_missing", "line_foreign")


@dataclasses.dataclass(frozen=True)
class Line:
    """One product of an order: its quantity, size (inches; None if unknown) and weight
    (pounds; None if unknown)."""

    asin: str
    name: str
    quantity: int
    length: float | None = None
    width: float | None = None
    height: float | None = None
    weight: float | None = None

    @property
    def volume(self) -> float | None:
        dims = (self.length, self.width, self.height)
        return None if None in dims else dims[0] * dims[1] * dims[2]


@dataclasses.dataclass(frozen=True)
class Order:
    """What an order states about one photo's bin, and nothing more: the verifier's input."""

    id: str
    image: str
    lines: tuple[Line, ...]
    total: int


@dataclasses.dataclass(frozen=True)
class Truth:
    """The answer key of one order, for scoring only: never given to the verifier."""

    id: str
    wrong: bool
    error: str | None
    true_total: int


@dataclasses.dataclass(frozen=True)
class Bin:
    """A photo and its true contents from the metadata."""

    image: str
    lines: tuple[Line, ...]

    @property
    def total(self) -> int:
        return sum(line.quantity for line in self.lines)


def _value(entry: dict, key: str, unit: str) -> float | None:
    """A measurement in `unit` (IN, pounds), or None when missing or in another unit."""
    v = entry.get(key)
    if not isinstance(v, dict) or v.get("value") is None:
        return None
    if str(v.get("unit", unit)).lower() != unit.lower():
        return None
    return float(v["value"])


def read_bin(image: Path) -> Bin | None:
    """The bin of a photo in the bucket layout (`bin-images/<id>.jpg` beside `metadata/`), or
    None when its metadata has no line items that add up to EXPECTED_QUANTITY."""
    meta = image.parent.parent / "metadata" / f"{image.stem}.json"
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    items = data.get("BIN_FCSKU_DATA")
    if not isinstance(items, dict) or not items:
        return None
    lines = []
    for asin, e in sorted(items.items()):
        lines.append(
            Line(
                asin=str(e.get("asin") or asin),
                name=str(e.get("name") or ""),
                quantity=int(e.get("quantity") or 0),
                length=_value(e, "length", "IN"),
                width=_value(e, "width", "IN"),
                height=_value(e, "height", "IN"),
                weight=_value(e, "weight", "pounds"),
            )
        )
    b = Bin(str(image), tuple(line for line in lines if line.quantity > 0))
    if not b.lines or b.total != data.get("EXPECTED_QUANTITY"):
        return None
    return b


def _errors_for(b: Bin) -> list[str]:
    """The errors that leave the bin's order non-empty."""
    out = ["unit_extra", "line_foreign"]
    if b.total > 1:
        out.insert(0, "unit_missing")
    if len(b.lines) > 1:
        out.insert(2, "line_missing")
    return out


def _apply(error: str, b: Bin, donors: list[Bin], rng: random.Random) -> tuple[Line, ...]:
    """The stated lines of bin `b` with `error`; a foreign line comes from another of `donors`."""
    lines = list(b.lines)
    if error == "line_foreign":
        mine = {line.asin for line in lines}
        for _ in range(1000):
            donor = donors[rng.randrange(len(donors))]
            pool = [line for line in donor.lines if line.asin not in mine]
            if donor is not b and pool:
                foreign = dataclasses.replace(rng.choice(pool), quantity=1)
                lines.insert(rng.randrange(len(lines) + 1), foreign)
                return tuple(lines)
        raise BincountError("no product from another bin to add: give more than one bin")
    if error == "line_missing":
        del lines[rng.randrange(len(lines))]
        return tuple(lines)
    if error == "unit_missing":
        i = rng.choice([i for i, line in enumerate(lines) if line.quantity > 1 or len(lines) > 1])
        q = lines[i].quantity - 1
        if q == 0:
            del lines[i]
        else:
            lines[i] = dataclasses.replace(lines[i], quantity=q)
        return tuple(lines)
    i = rng.randrange(len(lines))
    lines[i] = dataclasses.replace(lines[i], quantity=lines[i].quantity + 1)
    return tuple(lines)


def stream(bins: list[Bin], error_rate: float, seed: int, prefix: str = "order"):
    """[(Order, Truth)]: one order per bin; exactly round(error_rate * len(bins)) of them
    wrong, each with one error drawn uniformly from those that apply; deterministic by seed."""
    if not 0.0 <= error_rate <= 1.0:
        raise BincountError(f"error rate {error_rate} must be between 0 and 1")
    rng = random.Random(seed)
    n_wrong = round(error_rate * len(bins))
    wrong = set(rng.sample(range(len(bins)), n_wrong))
    out = []
    for i, b in enumerate(bins):
        oid = f"{prefix}-{i:05d}"
        if i in wrong:
            error = rng.choice(_errors_for(b))
            lines = _apply(error, b, bins, rng)
        else:
            error, lines = None, b.lines
        total = sum(line.quantity for line in lines)
        out.append(
            (Order(oid, b.image, lines, total), Truth(oid, error is not None, error, b.total))
        )
    return out


def order_to_json(order: Order) -> dict:
    return dataclasses.asdict(order) | {"lines": [dataclasses.asdict(x) for x in order.lines]}


MAX_QUANTITY = 1_000_000  # a stated total or quantity above this is no bin's
LINE_FIELDS = ("asin", "name", "quantity", "length", "width", "height", "weight")
SHAPE = (
    "each line needs id, image, lines (asin, name, quantity, ...) and total, as `bincount "
    "orders` writes them"
)


def _count(value, field: str, where: str, least: int) -> int:
    """A whole number least..MAX_QUANTITY (2.5, -3, "3", true and 10**30 are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BincountError(
            f"{where}: {field}={_shown(value)} is not a whole number: give one >= {least}"
        )
    if not least <= value <= MAX_QUANTITY:
        raise BincountError(
            f"{where}: {field}={_shown(value)} is out of range: give a whole number from {least} "
            f"to {MAX_QUANTITY}"
        )
    return value


def _measure(value, field: str, where: str) -> float | None:
    """A size or weight: null, or a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BincountError(f"{where}: {field}={_shown(value)} is not a number: give one >= 0")
    if not math.isfinite(value) or value < 0 or value > 1e12:
        raise BincountError(
            f"{where}: {field}={_shown(value)} is not a size or weight: give a finite number "
            ">= 0, or null when unknown"
        )
    return float(value)


def _shown(value) -> str:
    text = json.dumps(value) if isinstance(value, int | float | str | None) else repr(value)
    return text if len(text) <= 24 else f"{text[:20]}...({len(text)} characters)"


def _line(x, where: str) -> Line:
    if not isinstance(x, dict):
        raise BincountError(f"{where} is not an object: {SHAPE}")
    extra = sorted(set(x) - set(LINE_FIELDS))
    if extra or "quantity" not in x:
        what = f"has an unknown field {extra[0]!r}" if extra else "has no quantity"
        raise BincountError(f"{where} {what}: {SHAPE}")
    return Line(
        asin=str(x.get("asin", "")),
        name=str(x.get("name", "")),
        quantity=_count(x["quantity"], "quantity", where, least=1),
        **{k: _measure(x.get(k), k, where) for k in ("length", "width", "height", "weight")},
    )


def order_from_json(d: dict, where: str = "order") -> Order:
    """An order as `bincount orders` writes it, every field checked: BincountError naming the
    field otherwise (a total of 2.5 is refused, not read as 2)."""
    if not isinstance(d, dict):
        raise BincountError(f"{where} is not an order: {SHAPE}")
    missing = [k for k in ("id", "image", "lines", "total") if k not in d]
    if missing:
        raise BincountError(f"{where} is not an order (no {missing[0]}): {SHAPE}")
    if not isinstance(d["lines"], list) or not d["lines"]:
        raise BincountError(f"{where}: an order needs at least one line of quantity >= 1")
    lines = tuple(_line(x, f"{where}: lines[{i}]") for i, x in enumerate(d["lines"]))
    total = _count(d["total"], "total", where, least=0)
    return Order(str(d["id"]), str(d["image"]), lines, total)


def truth_path(orders_path: Path) -> Path:
    """Where the answer key of an order file lives: <name>.truth.jsonl beside it."""
    p = Path(orders_path)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return p.with_name(f"{stem}.truth.jsonl")


def write(path: Path, pairs: list[tuple[Order, Truth]]) -> tuple[Path, Path]:
    """The orders (JSON lines) to `path`, their truth to `truth_path(path)`."""
    path = Path(path)
    text = "".join(json.dumps(order_to_json(o)) + "\n" for o, _ in pairs)
    truth = "".join(json.dumps(dataclasses.asdict(t)) + "\n" for _, t in pairs)
    return atomic_write_text(path, text), atomic_write_text(truth_path(path), truth)


def _jsonl(path: Path, what: str) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise BincountError(f"{path} does not exist: write it with `bincount orders MODEL`")
    rows = []
    for n, line in enumerate(read_input_text(path, f"{what} file").splitlines(), 1):
        if not line.strip():
            continue
        try:  # bounded (depth, number size); NaN read, for the fields' own checks to name
            rows.append(jsonsafe.loads(line, f"{path}:{n}", nan=True))
        except BincountError as e:
            raise BincountError(f"{e}: one {what} per line") from None
    if not rows:
        raise BincountError(f"{path} holds no {what}")
    return rows


def read(path: Path) -> list[Order]:
    return [order_from_json(d, f"{path}:{n}") for n, d in enumerate(_jsonl(path, "order"), 1)]


def read_truth(path: Path) -> dict[str, Truth]:
    try:
        return {str(d["id"]): Truth(**d) for d in _jsonl(path, "truth")}
    except (KeyError, TypeError) as e:
        raise BincountError(f"{path} is not a truth file of `bincount orders` ({e})") from None
