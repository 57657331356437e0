"""Orders as a careless or hostile file states them: every field checked before any verdict (a
total of 2.5 refused, not judged as 2; -3 and 10**30 refused; NaN or infinite weights and sizes
refused), each with one line naming the order and the field, in the library and through
`bincount verify` (no traceback); and the order stream drawn from real metadata (errors on the
stated order only, the truth written apart)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from bincount.errors import BincountError
from bincount.verify import orders

LINE = {"asin": "B0", "name": "thing", "quantity": 2, "length": 3.0, "width": 2.0,
        "height": 1.0, "weight": 0.5}  # fmt: skip
GOOD = {"id": "o-1", "image": "x.jpg", "lines": [LINE], "total": 2}


def with_(field: str, value, line: bool = False) -> dict:
    if line:
        return {**GOOD, "lines": [{**LINE, field: value}]}
    return {**GOOD, field: value}


BAD = [
    (with_("total", 2.5), "total=2.5 is not a whole number"),
    (with_("total", -3), "total=-3 is out of range"),
    (with_("total", 10**30), "total=1" + "0" * 19 + "...(31 characters) is out of range"),
    (with_("total", "3"), 'total="3" is not a whole number'),
    (with_("total", True), "total=true is not a whole number"),
    (with_("quantity", 1.5, line=True), "lines[0]: quantity=1.5 is not a whole number"),
    (with_("quantity", 0, line=True), "lines[0]: quantity=0 is out of range"),
    (with_("weight", float("nan"), line=True), "lines[0]: weight=NaN is not a size or weight"),
    (with_("length", float("inf"), line=True), "lines[0]: length=Infinity is not a size"),
    (with_("height", -1, line=True), "lines[0]: height=-1 is not a size"),
    (with_("width", "2in", line=True), 'lines[0]: width="2in" is not a number'),
    (with_("colour", "red", line=True), "lines[0] has an unknown field 'colour'"),
    (with_("lines", []), "at least one line"),
    (with_("lines", ["B0"]), "lines[0] is not an object"),
    ({"id": "o-1", "lines": [LINE], "total": 2}, "is not an order (no image)"),
]


@pytest.mark.parametrize(("doc", "words"), BAD, ids=[w for _, w in BAD])
def test_each_bad_field_is_refused_by_name(doc, words):
    with pytest.raises(BincountError) as e:
        orders.order_from_json(doc, "orders.jsonl:7")
    message = str(e.value)
    assert words in message and message.startswith("orders.jsonl:7"), message
    assert "\n" not in message and len(message) < 300


def test_a_good_order_reads_as_written():
    order = orders.order_from_json(GOOD)
    assert order.total == 2 and order.lines[0].quantity == 2 and order.lines[0].weight == 0.5
    assert orders.order_to_json(order) == GOOD


def test_bincount_verify_refuses_a_bad_file_in_one_line(served_run, bincount, tmp_path):
    path = tmp_path / "orders.jsonl"
    lines = [json.dumps(GOOD), json.dumps(GOOD).replace('"total": 2', '"total": ' + "9" * 31)]
    for bad, words in [
        (lines[1], "orders.jsonl:2: total=9999"),
        (
            '{"id": "o-2", "image": "x.jpg", "total": 1, "lines": [{"asin": "a", "quantity": 1, '
            '"weight": NaN}]}',
            "weight=NaN",
        ),
        ("[" * 3000 + "]" * 3000, "nests 3000 levels deep"),
        ('{"total": 1' + "0" * 200 + "}", "at most 100"),
    ]:
        path.write_text(lines[0] + "\n" + bad + "\n")
        result = bincount("verify", served_run, path, "-o", tmp_path / "v.jsonl")
        assert result.returncode != 0 and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not (tmp_path / "v.jsonl").exists()


def test_read_bin_takes_the_line_items_of_the_metadata(abid):
    b = orders.read_bin(abid / "bin-images" / "01843.jpg")
    assert b.total == 3
    assert [(x.asin, x.quantity) for x in b.lines] == [("B000ANF8FO", 2), ("B019RRZ93E", 1)]
    assert b.lines[0].weight == pytest.approx(7.4)
    assert b.lines[0].volume == pytest.approx(4.3 * 13.1 * 8.1, rel=1e-6)


def test_stream_is_deterministic_and_has_the_asked_share_of_each_error(bins):
    a = orders.stream(bins, 0.2, seed=3)
    assert a == orders.stream(bins, 0.2, seed=3)
    assert a != orders.stream(bins, 0.2, seed=4)
    truths = [t for _, t in a]
    assert sum(t.wrong for t in truths) == 60  # exactly 20% of 300
    kinds = Counter(t.error for t in truths if t.wrong)
    assert set(kinds) == set(orders.ERRORS)
    assert min(kinds.values()) >= 8  # drawn evenly among the errors that apply
    assert all((t.error is None) == (not t.wrong) for t in truths)


def test_errors_change_the_stated_order_only(bins):
    before = [dataclasses.replace(b) for b in bins]
    for (order, truth), b in zip(orders.stream(bins, 0.5, seed=0), bins, strict=True):
        assert order.image == b.image  # the same photo
        assert truth.true_total == b.total  # the truth is the metadata's
        assert order.total == sum(x.quantity for x in order.lines) >= 1
        stated = {x.asin: x.quantity for x in order.lines}
        real = {x.asin: x.quantity for x in b.lines}
        if not truth.wrong:
            assert order.lines == b.lines
            continue
        assert order.total != b.total  # every picker error changes the stated total
        if truth.error == "unit_extra":
            assert order.total == b.total + 1 and stated.keys() == real.keys()
        elif truth.error == "unit_missing":
            assert order.total == b.total - 1 and stated.keys() <= real.keys()
        elif truth.error == "line_missing":
            assert len(stated) == len(real) - 1 and stated.items() <= real.items()
        else:
            (foreign,) = stated.keys() - real.keys()
            assert stated[foreign] == 1 and order.total == b.total + 1
    assert bins == before  # the bins (the truth) are untouched


def test_orders_round_trip_through_json_lines_with_the_truth_apart(bins, tmp_path):
    pairs = orders.stream(bins[:20], 0.5, seed=1)
    path, truth = orders.write(tmp_path / "o.jsonl", pairs)
    assert truth == tmp_path / "o.truth.jsonl"
    assert orders.read(path) == [o for o, _ in pairs]
    assert orders.read_truth(truth) == {t.id: t for _, t in pairs}
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"id", "image", "lines", "total"}  # nothing of the truth
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(BincountError, match="is not an order"):
        orders.read(tmp_path / "bad.jsonl")
