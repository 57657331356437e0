"""bincount.sagemaker.container.endpoint without a container: bad input is the toolkit's error when
sagemaker_inference is installed, and the library's own InputError when it is not."""

from __future__ import annotations

import sys

import pytest
from sagemaker_inference.errors import BaseInferenceToolkitError

from bincount.inference import InputError
from bincount.sagemaker.container import endpoint


def test_bad_input_is_the_toolkits_error_with_its_status():
    with pytest.raises(BaseInferenceToolkitError) as e:
        endpoint.input_fn(b"", "image/jpeg")
    assert (e.value.status_code, e.value.phrase) == (400, "Bad Request")
    assert e.value.message.startswith("the body is empty")
    with pytest.raises(BaseInferenceToolkitError) as e:
        endpoint.input_fn(b"{}", "text/csv")
    assert (e.value.status_code, e.value.phrase) == (415, "Unsupported Media Type")
    with pytest.raises(BaseInferenceToolkitError) as e:
        endpoint.output_fn({"count": 1}, "text/csv")
    assert e.value.status_code == 406


def test_without_the_toolkit_it_is_the_librarys_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sagemaker_inference", None)  # import fails
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", None)
    with pytest.raises(InputError) as e:
        endpoint.input_fn(b"", "image/jpeg")
    assert e.value.status == 400 and str(e.value).startswith("the body is empty")
    assert endpoint.output_fn({"count": 1}, "application/json") == '{"count": 1}'
