"""Inference, export and the HTTP app load models without Lightning: importing them never
imports pytorch_lightning (each checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module", ["bincount.inference", "bincount.export", "bincount.serving.app"]
)
def test_importing_does_not_import_lightning(module):
    code = f"import {module}, sys; assert 'pytorch_lightning' not in sys.modules, {module!r}"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_settings_do_not_import_torch():
    code = "import bincount.settings, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
