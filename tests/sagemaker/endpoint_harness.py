"""A SageMaker PyTorch inference container made of AWS's own Python code, without Docker.

What runs unmodified, installed from PyPI as the PyTorch 2.5 inference DLC installs it
(deep-learning-containers, pytorch/inference/docker/2.5/py3/Dockerfile.cpu):
- TorchServe's backend worker (`ts/model_service_worker.py` of `torchserve`), started as its
  Java frontend starts it: a fresh `python model_service_worker.py --sock-type unix ...`
  process; it loads the model with TorchServe's model loader and answers with its `Service`;
- the handler the DLC configures (`default_service_handler` =
  `sagemaker_pytorch_serving_container.handler_service:handle`), i.e. the
  `sagemaker-pytorch-inference` toolkit's HandlerService and the Transformer of its
  `sagemaker_inference` package, which imports `code/inference.py` from the model archive and
  calls model_fn / input_fn / predict_fn / output_fn, and turns exceptions into statuses.

What this harness does in place of the parts that are not Python (the one shim):
- `Frontend` speaks the worker's binary socket protocol as TorchServe's Java frontend does
  (a load message, then one inference message per request: the request headers, and the body
  as the parameter "body" with its media type, as `InferenceRequestHandler.parseRequest` builds
  it), and reads back the status, reason phrase, content type and body that the frontend turns
  into the HTTP answer;
- the worker's environment is what the container gives it: the model's `Environment` from the
  CreateModel request, `PYTHONPATH` = the archive's code dir (what the toolkit's
  `torchserve._set_python_path` sets before starting TorchServe) and `TS_DECODE_INPUT_REQUEST`
  from the toolkit's own `etc/default-ts.properties` (the frontend passes that setting on);
- `/opt/ml/model` is a temporary folder (SageMaker extracts model.tar.gz there);
- the toolkit's `pip install -r code/requirements.txt` is not run (no network in tests): the
  test checks the requirements against what the worker imported instead.
"""

from __future__ import annotations

import ast
import os
import socket
import struct
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

HANDLER = "sagemaker_pytorch_serving_container.handler_service:handle"  # DLC's default
MODEL_NAME = "model"  # torchserve.DEFAULT_TS_MODEL_NAME


def extract_model(archive: bytes | Path, root: Path) -> Path:
    """model.tar.gz extracted as SageMaker does into /opt/ml/model (here: root/opt/ml/model)."""
    model_dir = root / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    archive_path = root / "model.tar.gz"
    if isinstance(archive, bytes):
        archive_path.write_bytes(archive)
    else:
        archive_path = Path(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def toolkit_properties() -> dict[str, str]:
    """The toolkit's own etc/default-ts.properties (the TorchServe config the DLC starts)."""
    import sagemaker_pytorch_serving_container

    path = Path(sagemaker_pytorch_serving_container.__file__).parent / "etc"
    lines = (path / "default-ts.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@dataclass
class Response:
    status: int
    phrase: str
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else bytes(value)
    return struct.pack("!i", len(data)) + data


class Frontend:
    """TorchServe's Java frontend, as far as one backend worker sees it."""

    def __init__(self, model_dir: Path, environment: dict[str, str], workdir: Path):
        import ts

        self.model_dir = model_dir
        self.sock_name = str(workdir / "ts.sock.9000")
        self.log = workdir / "worker.log"
        code_dir = str(model_dir / "code")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BINCOUNT_ROOT")}
        env.update(environment)
        env["PYTHONPATH"] = code_dir
        env["TS_DECODE_INPUT_REQUEST"] = toolkit_properties()["decode_input_request"]
        ts_dir = Path(ts.__file__).parent
        cmd = [
            sys.executable,
            "-u",
            "-X",
            "importtime",  # an observer's flag: which modules the request path imports
            str(ts_dir / "model_service_worker.py"),
            "--sock-type",
            "unix",
            "--sock-name",
            self.sock_name,
            "--metrics-config",
            str(ts_dir / "configs" / "metrics.yaml"),
        ]
        self._log_file = open(self.log, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self.sock = self._connect()
        self._next_id = 0

    def _connect(self, timeout: float = 240.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited: {self.log_tail()}")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.sock_name)
                return sock
            except OSError:
                sock.close()
                time.sleep(0.2)
        raise RuntimeError(f"the worker never listened: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the worker's output, without its -X importtime lines."""
        self._log_file.flush()
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if not line.startswith("import time:"))[-chars:]

    # -- the socket protocol (ts/protocol/otf_message_handler.py, the worker's side of it)
    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError(f"the worker hung up: {self.log_tail()}")
            data += chunk
        return data

    def _int(self) -> int:
        return struct.unpack("!i", self._read(4))[0]

    def _bytes(self) -> bytes:
        n = self._int()
        return self._read(n) if n > 0 else b""

    def load(self, batch_size: int = 1) -> tuple[int, str]:
        """The frontend's load message (ModelRequestEncoder); the worker's code and message."""
        msg = b"L" + _string(MODEL_NAME) + _string(str(self.model_dir))
        msg += struct.pack("!i", batch_size) + _string(HANDLER)
        msg += struct.pack("!i", -1)  # gpu id: none
        msg += _string("")  # envelope: none
        msg += struct.pack("!?", True)  # limitMaxImagePixels
        self.sock.sendall(msg)
        code, message = self._int(), self._bytes().decode()
        assert self._int() == -1
        return code, message

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None):
        """POST /invocations as the SageMaker platform sends it to the container."""
        self._next_id += 1
        headers = {"Host": "localhost:8080", "Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        mime = (content_type or "").split(";")[0].strip().lower()  # HttpUtil.getMimeType
        msg = b"I" + _string(f"req-{self._next_id}")
        for name, value in headers.items():
            msg += _string(name) + _string(value)
        msg += struct.pack("!i", -1)
        msg += _string("body") + _string(mime) + _string(body)
        msg += struct.pack("!i", -1)  # end of the request's parameters
        msg += struct.pack("!i", -1)  # end of the batch
        self.sock.sendall(msg)
        return self._response()

    def _response(self) -> Response:
        code, message = self._int(), self._bytes().decode()
        answers = []
        while (id_length := self._int()) != -1:  # a request id, or the end of the list
            self._read(id_length)
            content_type = self._bytes().decode()
            status = self._int()
            phrase = self._bytes().decode()
            for _ in range(self._int()):  # response headers
                self._bytes(), self._bytes()
            answers.append(Response(status, phrase, content_type, self._bytes()))
        (answer,) = answers
        if code != 200:  # the whole batch failed: the frontend answers with the batch's code
            return Response(code, message, "application/json", answer.body)
        return answer

    def close(self) -> int:
        """Stop the worker (it runs until its frontend hangs up); its peak memory in MB."""
        peak = peak_rss_mb(self.proc.pid)
        self.sock.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()
        return peak


class Runtime:
    """InvokeEndpoint on 127.0.0.1 in front of a Frontend: this part is an emulation, not AWS's
    code. It passes the body, Content-Type and Accept to the container and answers as the
    SageMaker runtime documents it: the container's 2xx body, or a 424 ModelError carrying the
    container's status and body (OriginalStatusCode, OriginalMessage)."""

    def __init__(self, frontend: Frontend):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # /endpoints/NAME/invocations
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    answer = frontend.invoke(
                        body, self.headers.get("Content-Type"), self.headers.get("Accept")
                    )
                if answer.status < 300:
                    status, headers, data = answer.status, {}, answer.body
                else:
                    name = self.path.split("/")[2]
                    status, headers = 424, {"x-amzn-ErrorType": "ModelError"}
                    data = json.dumps(
                        {
                            "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
                            "Message": f"Received client error ({answer.status}) from primary "
                            f"with message {answer.text!r}.",
                            "OriginalStatusCode": answer.status,
                            "OriginalMessage": answer.text,
                            "LogStreamArn": f"arn:aws:logs:::log-group:/aws/sagemaker/{name}",
                        }
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", answer.content_type or "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def peak_rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def bincount_modules(log: str) -> set[str]:
    """bincount's modules the worker imported, from its `-X importtime` lines."""
    names = set()
    for line in log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name.split(".")[0] == "bincount":
                names.add(name)
    return names


def imports_of(code_dir: Path, modules: set[str]) -> set[str]:
    """The top-level names those modules' files import (anywhere in them), read with ast."""
    tops = set()
    for module in modules:
        path = code_dir.joinpath(*module.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                tops |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    return tops
