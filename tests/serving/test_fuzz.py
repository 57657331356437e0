"""A fuzz pass over the HTTP body parsers (Hypothesis, derandomized: the same examples every run,
a fixed budget of a few seconds): whatever the body, content type, query, headers or order file
line, the answer is a 4xx with a one-line JSON error or a result, never a 500 or an exception
other than the project's own."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bincount import inference, jsonsafe
from bincount.errors import BincountError
from bincount.serving.app import create_app, custom_attributes
from bincount.verify import orders

FUZZ = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Documents shaped like requests, with wrong values where they count.
request_docs = st.fixed_dictionaries(
    {},
    optional={
        "image": json_values | st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        "images": st.lists(
            json_values | st.fixed_dictionaries({"image": json_values, "expected": json_values}),
            max_size=4,
        ),
        "expected": json_values,
    },
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/tiff",
        "image/",
        "image/x-whatever",
        "application/x-image",
        "text/plain",
        "",
    ]
)


@pytest.fixture(scope="module")
def client(torch_model):
    return create_app(torch_model).test_client()


def _check(response) -> None:
    assert response.status_code < 500, response.get_data()[:300]
    doc = response.get_json()
    if response.status_code >= 400:
        assert isinstance(doc["error"], str) and "\n" not in doc["error"]


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
accepts = st.sampled_from(["*/*", "application/json", "text/csv", "image/*"])


@FUZZ
@given(
    body=st.binary(max_size=300) | request_docs.map(lambda d: json.dumps(d).encode()),
    content_type=content_types,
    expected=st.none() | st.text(max_size=12),
    attributes=st.none() | header_text,
    accept=st.none() | accepts,
)
def test_the_app_answers_any_request_without_a_500(
    client, body, content_type, expected, attributes, accept
):
    headers = {"Content-Type": content_type}
    if attributes is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    if accept is not None:
        headers["Accept"] = accept
    query = {} if expected is None else {"expected": expected}
    _check(client.post("/invocations", data=body, headers=headers, query_string=query))


byte_flips = st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6)


@FUZZ
@given(cut=st.integers(0, 4000), flips=byte_flips)
def test_broken_photos_are_input_errors(photo, cut, flips):
    data = bytearray(photo[: len(photo) - cut])
    for i, value in flips:
        if i < len(data):
            data[i] = value
    try:
        request = inference.input_fn(bytes(data), "image/jpeg")
        inference.decode_image(request.images[0], 64)
    except inference.InputError as e:
        assert "\n" not in str(e) and "0x" not in str(e)


@FUZZ
@given(text=st.text(max_size=200) | json_values.map(lambda v: json.dumps(v)))
def test_jsonsafe_reads_json_or_says_one_line(text):
    try:
        value = jsonsafe.loads(text)
    except BincountError as e:
        assert "\n" not in str(e)
    else:
        assert value == json.loads(text) or value != value  # NaN


@FUZZ
@given(value=json_values, header=st.text(max_size=40))
def test_expected_and_custom_attributes_never_raise_other_errors(value, header):
    try:
        inference.parse_expected(value)
    except inference.InputError as e:
        assert "\n" not in str(e) and len(str(e)) < 200
    assert isinstance(custom_attributes(header), dict)


@FUZZ
@given(
    doc=st.fixed_dictionaries(
        {"id": json_values, "image": st.text(max_size=5), "total": json_values},
        optional={
            "lines": st.lists(
                st.dictionaries(
                    st.sampled_from((*orders.LINE_FIELDS, "extra")), json_values, max_size=8
                ),
                max_size=3,
            )
            | json_values
        },
    )
)
def test_order_lines_are_orders_or_one_line_refusals(doc):
    try:
        order = orders.order_from_json(doc, "o.jsonl:1")
    except BincountError as e:
        assert "\n" not in str(e) and str(e).startswith("o.jsonl:1")
    else:
        assert isinstance(order.total, int) and 0 <= order.total <= orders.MAX_QUANTITY
        for line in order.lines:
            assert 1 <= line.quantity <= orders.MAX_QUANTITY
            for v in (line.length, line.width, line.height, line.weight):
                assert v is None or 0 <= v < float("inf")
