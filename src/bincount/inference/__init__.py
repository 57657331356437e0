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

Importing this package never imports pytorch_lightning, and imports torch only when one of its
names is first used (`bincount.inference.verdicts`, numpy only, stays torch-free).
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # import-linter counts these: the package's graph is its submodules'
    from bincount.inference import loading, predict, requests  # noqa: F401

#: each public name and the submodule that defines it (imported on first use)
_NAMES = {
    "loading": [
        "CALIBRATION",
        "ONNX_META",
        "Model",
        "file_version",
        "load_net",
        "model_fn",
        "resolve",
    ],
    "predict": ["predict_fn", "probabilities"],
    "requests": [
        "IMAGE_FORMATS",
        "IMAGE_TYPES",
        "JSON_TYPE",
        "InputError",
        "Request",
        "check_accept",
        "check_budget",
        "check_image",
        "decode_image",
        "image_size",
        "input_fn",
        "output_fn",
        "parse_expected",
        "with_expected",
    ],
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted([*_WHERE, "settings"])


def __getattr__(name: str):
    if name == "settings":
        from bincount.settings import settings

        return settings
    if name in _WHERE:
        value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
