"""SageMaker's PyTorch serving contract: `model_fn`, `input_fn`, `predict_fn`, `output_fn`.

Every way of asking the model for a count goes through these four functions: the local server
(`bincount serve`), batch prediction (`bincount predict`) and the SageMaker endpoint (this
package is packed into the model archive with `bincount`, behind `code/inference.py`).

- `model_fn(model_dir)` (loading.py): a run folder, a `.ckpt` or an ONNX export, loaded into a
  plain `CountNet` (no Lightning) or an onnxruntime session (onnx.py), with its calibration.
- `input_fn(body, content_type)` (requests.py): the request's images, checked against
  conf/serve.yaml's limits; `InputError` (a 4xx status and a message) if bad.
- `predict_fn(request, model)` (predict.py): count, probabilities per count, mean count,
  confidence and, when an expected quantity is given, a verdict (`match`, `mismatch`, `unsure`).
- `output_fn(prediction, accept)` (requests.py): JSON.

Importing this package never imports pytorch_lightning.
"""

from bincount.inference.loading import (
    CALIBRATION,
    ONNX_META,
    Model,
    file_version,
    load_net,
    model_fn,
    resolve,
    run_folder,
)
from bincount.inference.predict import predict_fn, probabilities
from bincount.inference.requests import (
    IMAGE_FORMATS,
    IMAGE_TYPES,
    JSON_TYPE,
    InputError,
    Request,
    check_accept,
    check_budget,
    check_image,
    decode_image,
    image_size,
    input_fn,
    output_fn,
    parse_expected,
    with_expected,
)
from bincount.settings import settings

__all__ = [
    "CALIBRATION",
    "IMAGE_FORMATS",
    "IMAGE_TYPES",
    "JSON_TYPE",
    "ONNX_META",
    "InputError",
    "Model",
    "Request",
    "check_accept",
    "check_budget",
    "check_image",
    "decode_image",
    "file_version",
    "image_size",
    "input_fn",
    "load_net",
    "model_fn",
    "output_fn",
    "parse_expected",
    "predict_fn",
    "probabilities",
    "resolve",
    "run_folder",
    "settings",
    "with_expected",
]
