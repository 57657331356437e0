"""Orders as a careless or hostile file states them: every field checked before any verdict (a
total of 2.5 refused, not judged as 2; -3 and 10**30 refused; NaN or infinite weights and sizes
refused), each with one line naming the order and the field, in the library and through
`bincount verify` (no traceback)."""

from __future__ import annotations

import json

import pytest

from bincount import orders
from bincount.errors import BincountError

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
