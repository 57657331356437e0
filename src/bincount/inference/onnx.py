"""The ONNX backend: an onnxruntime session over `bincount export`'s model.onnx."""

from __future__ import annotations

import os

import numpy as np

from bincount.errors import BincountError


class OnnxNet:
    """An onnxruntime session: float32 batch (N, 3, S, S) -> logits (N, K)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spin:  # idle threads sleep instead of busy-waiting: better on shared cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise BincountError(
                f"{path} is not a usable ONNX model ({e}): re-run `bincount export`"
            ) from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]
