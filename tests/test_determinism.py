"""The same inputs give byte-identical artifacts, also across processes whose string
hashing differs (PYTHONHASHSEED) and for graphs with many parallel branches, where
tf2onnx's rewrites used to depend on object addresses and set order."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "nasnet_mobile": ["-r", "32", "--knob", "cell_repeats=1", "--knob", "penultimate_filters=192"],
    "mobilenet_v3_small": ["-r", "32", "--layout", "nchw", "--format", "onnx"],
    # a phone's ONNX keeps each channel shuffle as Reshape/Transpose/Reshape
    "shufflenet_v1": ["-r", "32", "--format", "onnx", "--device", "pixel"],
}


def _export(model: str, out: Path, seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "mobilectl.cli", "export", model, *CASES[model],
                           "--int8", "--calib-samples", "8", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.iterdir()) if p.suffix in (".onnx", ".tflite")}


@pytest.mark.parametrize("model", sorted(CASES))
def test_exports_are_byte_identical_across_processes(model: str, tmp_path: Path) -> None:
    first = _export(model, tmp_path / "a", "1")
    assert first and first == _export(model, tmp_path / "b", "2")
