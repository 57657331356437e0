"""`bincount.inference`'s four functions in the shape SageMaker's PyTorch inference container
calls them (code/inference.py of the model archive re-exports these).

The container's toolkit (sagemaker-pytorch-inference's Transformer) counts each function's
parameters and passes its request context as one more argument when there is room for it, so
each function here takes exactly the arguments the toolkit gives (`model_fn(model_dir)`: the
library's optional `backend` would receive the context). The toolkit answers 500 for any
exception except its own `BaseInferenceToolkitError`, whose status it sends: a bad request
(`InputError`) is raised again as that error, with its 4xx status and one-line message.
sagemaker_inference is imported only when an error is raised, and only if it is installed.
"""

from __future__ import annotations

from http import HTTPStatus

from bincount import inference
from bincount.inference import InputError


def toolkit_error(error: InputError) -> Exception:
    """The toolkit's error for a bad request (the InputError itself outside the container)."""
    try:
        from sagemaker_inference.errors import GenericInferenceToolkitError
    except ImportError:
        return error
    try:
        phrase = HTTPStatus(error.status).phrase
    except ValueError:
        phrase = "Bad Request"
    return GenericInferenceToolkitError(error.status, str(error), phrase)


def model_fn(model_dir):
    return inference.model_fn(model_dir)


def input_fn(request_body, content_type):
    try:
        return inference.input_fn(request_body, content_type)
    except InputError as e:
        raise toolkit_error(e) from None


def predict_fn(data, model):
    try:
        return inference.predict_fn(data, model)
    except InputError as e:  # an image that does not decode
        raise toolkit_error(e) from None


def output_fn(prediction, accept):
    try:
        return inference.output_fn(prediction, accept)
    except InputError as e:  # an Accept header JSON does not satisfy
        raise toolkit_error(e) from None
