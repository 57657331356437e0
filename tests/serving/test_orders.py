"""The order stream (real metadata of ../shared/abid), the order-aware verifier (which sees the
photo's probabilities and the stated order, never the truth), and `bincount orders` / `verify`
on the session's trained run."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from bincount import order_verifier, orders
from bincount.errors import BincountError

COUNTS = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def bins(abid) -> list[orders.Bin]:
    """300 real bins (photo + line items) spread over the mirror."""
    paths = sorted((abid / "bin-images").glob("*.jpg"))[::8]
    out = [b for b in (orders.read_bin(p) for p in paths) if b is not None]
    assert len(out) >= 300
    return out[:300]


def test_the_order_logic_runs_without_torch():
    code = "import sys, bincount.orders, bincount.order_verifier; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


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


def photo(count: int, sharp: float = 0.9) -> np.ndarray:
    """The probabilities of a fair model that saw `count` objects (`sharp` on it)."""
    p = np.full(len(COUNTS), (1 - sharp) / (len(COUNTS) - 1))
    p[COUNTS.index(count)] = sharp
    return p


@pytest.fixture(scope="module")
def verifier(bins) -> dict:
    """Fitted on 5 draws of the stream over real bins whose photos a good model read: right
    with probability 0.98, else one off. (With 20% wrong orders, a `mismatch` at 90% precision
    needs such a model: an order one off from a 60%-right model's count is as often right.)"""
    rng = np.random.default_rng(0)
    x, wrong = [], []
    for seed in range(5):
        for order, truth in orders.stream(bins, 0.2, seed=seed):
            t = truth.true_total
            if t not in COUNTS:
                continue
            seen = t if rng.random() < 0.98 else int(np.clip(t + rng.choice([-1, 1]), 1, 5))
            x.append(order_verifier.features(photo(seen), COUNTS, order))
            wrong.append(truth.wrong)
    return order_verifier.fit(np.asarray(x), np.asarray(wrong), 0.9, 0.95)


def test_the_verifier_sees_the_stated_order_and_no_truth():
    assert {f.name for f in dataclasses.fields(orders.Order)} == {"id", "image", "lines", "total"}
    params = inspect.signature(order_verifier.answer).parameters
    assert list(params) == ["verifier", "p", "counts", "order"]


def test_an_order_altered_by_a_unit_or_a_line_loses_the_match(verifier, bins):
    assert verifier["validation"]["mismatch_precision"] >= 0.9
    assert verifier["validation"]["match_precision"] >= 0.95
    b = next(b for b in bins if b.total == 3 and len(b.lines) >= 2)
    right = orders.Order("o", b.image, b.lines, b.total)
    first, rest = b.lines[0], b.lines[1:]
    one_less = dataclasses.replace(first, quantity=first.quantity - 1)
    altered = {
        "unit missing": (one_less, *rest) if one_less.quantity else rest,
        "line missing": rest,
        "unit extra": (dataclasses.replace(first, quantity=first.quantity + 1), *rest),
    }
    p = photo(3)  # the photo clearly shows 3
    good = order_verifier.answer(verifier, p, COUNTS, right)
    assert good["verdict"] == "match"
    for what, lines in altered.items():
        order = orders.Order("o", b.image, tuple(lines), sum(x.quantity for x in lines))
        bad = order_verifier.answer(verifier, p, COUNTS, order)
        assert bad["p_match"] < good["p_match"] - 0.3, what
        assert bad["verdict"] == "mismatch", what


def test_orders_then_verify_prints_both_verdicts_and_ignores_the_truth(
    served_run, tmp_path, bincount
):
    stream = tmp_path / "orders.jsonl"
    proc = bincount("orders", served_run, "--mismatch-rate", "0.5", "-o", stream)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert "test orders" in out and (tmp_path / "orders.truth.jsonl").is_file()
    n = len(stream.read_text().splitlines())
    verdicts = tmp_path / "verdicts.jsonl"
    proc = bincount("verify", served_run, stream, "-o", verdicts)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert "| photo-only |" in out and "| order-aware |" in out
    rows = [json.loads(line) for line in verdicts.read_text().splitlines()]
    assert len(rows) == n
    assert {r["verdict"] for r in rows} <= {"match", "mismatch", "unsure"}
    assert all(0.0 <= r["p_match"] <= 1.0 for r in rows)
    # a different answer key changes the score, never the verdicts
    truth = tmp_path / "orders.truth.jsonl"
    flipped = [json.loads(line) | {"wrong": True} for line in truth.read_text().splitlines()]
    truth.write_text("".join(json.dumps(t) + "\n" for t in flipped))
    again = tmp_path / "again.jsonl"
    proc = bincount("verify", served_run, stream, "-o", again)
    code, out2, err = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, err
    assert again.read_text() == verdicts.read_text()
    assert f"{n} orders, {n} wrong" in out2


def test_verify_needs_a_calibrated_order_verifier(served_run, tmp_path, bincount):
    stream = tmp_path / "orders.jsonl"
    assert bincount("orders", served_run, "-o", stream).returncode == 0
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "checkpoints/best.ckpt"):
        (run / name).write_bytes((served_run / name).read_bytes())
    proc = bincount("verify", run, stream)
    code, err = proc.returncode, proc.stderr
    assert code == 2 and "bincount calibrate" in err and "Traceback" not in err
