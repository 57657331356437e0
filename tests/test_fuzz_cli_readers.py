"""Fuzz the command line's file readers and checks (Hypothesis, a fixed budget: derandomized,
so CI runs the same examples every time): whatever bytes a CSV list, an order or truth file
holds, and whatever value an override sets, the answer is a result or one BincountError line,
never another exception. A hand-made corpus of hostile files runs first."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict

from bincount import argtypes, batch, fileio, validate
from bincount.errors import BincountError
from bincount.verify import orders

BUDGET = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CORPUS = [
    b"",
    b"\n\n\n",
    b"path\n",
    b"path\n\n",
    b"\xef\xbb\xbfpath,expected\nphoto.jpg,3\n",  # a byte-order mark
    b"path,expected\nphoto.jpg\n",  # a short row
    b"path,expected\nphoto.jpg,3,4,5\n",  # a long row
    b'path\n"unterminated\n',
    b"path\n" + b"x" * 300_000 + b"\n",  # a field past csv's limit
    b"path\r\na.jpg\r\n",
    b"\x00\x00\x00\x00",
    b"\xff\xd8\xff\xe0 a JPEG, not a list",
    b"[" * 5000 + b"]" * 5000,
    b'{"id": "1", "lines": [], "total": 3}\n',
    b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"\n",
    b"1e999999\n",
    b'"\\ud800"\n',  # a lone surrogate
    b"NaN\n",
]


def _one_line(e: BaseException) -> None:
    assert isinstance(e, BincountError), f"{type(e).__name__}: {e}"
    assert "\n" not in str(e) and str(e).strip(), repr(str(e))


def _csv(path, data: bytes):
    path.write_bytes(data)
    try:
        return batch.collect([str(path)])
    except BincountError as e:
        _one_line(e)
        return None


def _jsonl(path, data: bytes):
    path.write_bytes(data)
    try:
        return orders._jsonl(path, "order")
    except BincountError as e:
        _one_line(e)
        return None


def _truth(path, data: bytes):
    path.write_bytes(data)
    try:
        return orders.read_truth(path)
    except BincountError as e:
        _one_line(e)
        return None


@pytest.mark.parametrize("data", CORPUS, ids=range(len(CORPUS)))
def test_the_corpus(tmp_path, data):
    for reader, name in ((_csv, "list.csv"), (_jsonl, "orders.jsonl"), (_truth, "t.jsonl")):
        reader(tmp_path / name, data)


@BUDGET
@given(data=st.binary(max_size=2000))
def test_any_bytes_as_a_csv_list(tmp_path, data):
    items = _csv(tmp_path / "list.csv", data)
    if items is not None:
        assert all(item.source for item in items)


csv_cells = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)


@BUDGET
@given(
    header=st.lists(st.sampled_from(["path", "expected", "count", "", "x,y", '"q"']), max_size=4),
    rows=st.lists(st.lists(csv_cells, max_size=5), max_size=8),
)
def test_any_table_as_a_csv_list(tmp_path, header, rows):
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    items = _csv(tmp_path / "list.csv", buf.getvalue().encode("utf-8", "surrogatepass"))
    if items is not None:
        # an empty row is a blank line, which a CSV reader skips
        assert "path" in header and len(items) == sum(1 for r in rows if r)
        for item in items:
            batch.check_column([item], None)


@BUDGET
@given(data=st.binary(max_size=2000))
def test_any_bytes_as_an_order_or_truth_file(tmp_path, data):
    rows = _jsonl(tmp_path / "orders.jsonl", data)
    if rows is not None:
        assert rows
    _truth(tmp_path / "t.jsonl", data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@BUDGET
@given(docs=st.lists(json_values, min_size=1, max_size=5))
def test_any_json_lines_as_a_truth_file(tmp_path, docs):
    text = "".join(json.dumps(d) + "\n" for d in docs)
    _truth(tmp_path / "t.jsonl", text.encode())


@BUDGET
@given(cap=st.integers(min_value=1, max_value=64), data=st.binary(max_size=200))
def test_the_read_cap_holds_for_any_size(tmp_path, monkeypatch, cap, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    monkeypatch.setenv(fileio.MAX_INPUT_ENV, str(cap))
    try:
        got = fileio.read_input(path)
    except BincountError as e:
        _one_line(e)
        assert len(data) > cap
    else:
        assert got == data and len(data) <= cap


# --- override values --------------------------------------------------------------------------

override_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.lists(st.integers(min_value=-3, max_value=9) | st.floats(), max_size=4)
)
KEYS = sorted(
    {*validate.RULES, *validate.CHOICES, "data.counts", "data.split", "ckpt_path"}
    - {k for k in (*validate.RULES, *validate.CHOICES) if "*" in k}
)


@pytest.fixture(scope="module")
def base_cfg():
    from hydra import compose, initialize_config_dir

    from bincount.config import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["debug=health", "callbacks=ema"])


@BUDGET
@given(key=st.sampled_from(KEYS), value=override_values)
def test_any_override_value_is_accepted_or_one_line(base_cfg, key, value):
    cfg = base_cfg.copy()
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=False)
    try:
        validate.check_train_config(cfg)
    except BincountError as e:
        _one_line(e)


@BUDGET
@given(text=st.text(max_size=20))
def test_any_text_as_a_command_line_number(text):
    for parse in (argtypes.whole(0), argtypes.positive_int, argtypes.fraction, argtypes.counts):
        try:
            parse(text)
        except argparse.ArgumentTypeError as e:
            assert "\n" not in str(e)
