"""int8 ONNX made for its target: uint8 activations on x86 (onnxruntime's U8S8 kernels),
int8 on ARM (S8S8), overridable, selectable calibration ranges, all recorded in the
manifest and the file name."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from exporter.pipeline import ExportOptions, export
from helpers import error_line, run
from mobilectl.core.types import Activations, CalibrationMethod
from quant.onnx_quant import activations_for, host_arch


def _activation_types(path: Path) -> set[str]:
    """Element types of the zero points of the QuantizeLinear nodes (activations)."""
    proto = onnx.load(path)
    inits = {i.name: i for i in proto.graph.initializer}
    return {str(numpy_helper.to_array(inits[n.input[2]]).dtype)
            for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits}


def _zero_points(path: Path) -> list[tuple[str, int]]:
    proto = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    return [(n.name, inits[n.input[2]]) for n in proto.graph.node
            if n.op_type == "QuantizeLinear" and n.input[2] in inits]


def _export(digits_model: dict, out: Path, **options) -> list:
    opts = ExportOptions(precision="int8", formats=("onnx",), calib=digits_model["calib"],
                         calib_samples=48, **options)
    return export("mobilenet_v1", knobs=digits_model["knobs"], weights=digits_model["weights"],
                  options=opts, out=out).entries


def test_architectures_pick_their_activation_type() -> None:
    assert activations_for("x86_64") == Activations.UINT8
    assert activations_for("arm64-v8a") == activations_for("aarch64") == Activations.INT8
    assert ExportOptions().target == host_arch()
    assert ExportOptions(target="arm64-v8a").activations == Activations.INT8
    assert ExportOptions(target="x86_64", activations="int8").activations == Activations.INT8


def test_default_target_and_override(digits_model: dict, tmp_path: Path) -> None:
    (default,) = _export(digits_model, tmp_path / "a", target="x86_64")
    assert default.path == "mobilenet_v1-w0.25-r32-c48_int8.onnx"
    assert _activation_types(tmp_path / "a" / default.path) == {"uint8"}
    (arm,) = _export(digits_model, tmp_path / "b", target="arm64-v8a")
    assert arm.path == "mobilenet_v1-w0.25-r32-hsplain-c48-aint8_int8.onnx"
    assert _activation_types(tmp_path / "b" / arm.path) == {"int8"}
    for entry, acts, target in ((default, "uint8", "x86_64"), (arm, "int8", "arm64-v8a")):
        assert entry.verification.passed and entry.verification.enforced
        recipe = json.loads((tmp_path / ("a" if acts == "uint8" else "b") / "manifest.json")
                            .read_text())["artifacts"][0]["quantization"]
        assert recipe == {"activations": acts, "weights": "int8", "per_channel": True,
                          "format": "qdq", "calibration_method": "minmax", "target": target,
                          "symmetric_activations": False, "trained_ranges": False}


def test_qoperator_and_symmetric_activations(digits_model: dict, tmp_path: Path) -> None:
    (entry,) = _export(digits_model, tmp_path, target="x86_64", quant_format="qoperator",
                       symmetric=True)
    assert entry.path == "mobilenet_v1-w0.25-r32-c48-qoperator-sym_int8.onnx"
    assert entry.quantization.format == "qoperator" and entry.quantization.symmetric_activations
    assert entry.verification.passed, entry.verification.metrics
    proto = onnx.load(tmp_path / entry.path)
    types = {n.op_type for n in proto.graph.node}
    assert "QLinearConv" in types and "DequantizeLinear" in types  # only at the output
    # symmetric uint8 activations: every activation zero point is the middle, 128
    assert {int(v) for _, v in _zero_points(tmp_path / entry.path)} == {128}
    (plain,) = _export(digits_model, tmp_path / "plain", target="x86_64")
    assert plain.quantization.format == "qdq" and not plain.quantization.symmetric_activations
    # asymmetric by default on x86: each activation's range decides its zero point
    assert {int(v) for _, v in _zero_points(tmp_path / "plain" / plain.path)} != {128}


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_calibration_methods_verify(digits_model: dict, tmp_path: Path, method: str) -> None:
    (entry,) = _export(digits_model, tmp_path, target="x86_64", calib_method=method)
    assert entry.path == f"mobilenet_v1-w0.25-r32-c48-{method}_int8.onnx"
    assert entry.quantization.calibration_method == CalibrationMethod(method)
    assert entry.verification.passed, entry.verification.metrics


def test_cli_device_picks_the_target(digits_model: dict, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["export", "mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes", "10",
            "--weights", digits_model["weights"], "--calib", digits_model["calib"],
            "--calib-samples", "48", "--int8", "--format", "onnx", "--json"]
    code, out, err = run([*argv, "--device", "pixel", "--out", str(tmp_path / "p")], capsys)
    assert code in (0, None), err
    (entry,) = json.loads(out)["artifacts"]
    assert entry["quantization"]["activations"] == "int8"
    assert entry["quantization"]["target"] == "arm64-v8a"
    line = error_line(*run([*argv, "--activations", "int4", "--out", str(tmp_path / "x")],
                           capsys)[::2])
    assert "--activations 'int4' is not allowed: one of uint8, int8" in line
    line = error_line(*run([*argv[:-3], "--calib-method", "entropy", "--format", "tflite",
                            "--out", str(tmp_path / "y")], capsys)[::2])
    assert "--calib-method entropy applies to ONNX only" in line
    line = error_line(*run([*argv, "--quant-format", "qop", "--out", str(tmp_path / "x")],
                           capsys)[::2])
    assert "--quant-format 'qop' is not allowed: one of qdq, qoperator" in line
    line = error_line(*run([*argv[:-3], "--symmetric", "--format", "tflite",
                            "--out", str(tmp_path / "y")], capsys)[::2])
    assert "--symmetric applies to ONNX only" in line
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
