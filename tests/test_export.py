"""The export pipeline end to end on a trained model: every format and precision,
int8 agreement with float, determinism, layouts, mixed precision, metadata, manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from exporter import tflite as tflite_export
from quant import tflite_quant
from exporter.pipeline import ExportOptions, Thresholds, VerificationFailed, export

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


def _export(digits_model: dict, out: Path, **options) -> list[dict]:
    knobs, weights = digits_model["knobs"], digits_model["weights"]
    opts = ExportOptions(calib=digits_model["calib"], calib_samples=48, **options)
    result = export("mobilenet_v1", knobs=knobs, weights=weights, options=opts, out=out)
    return [e.to_dict() for e in result.entries]


def test_trained_model_learned_something(digits_model: dict) -> None:
    assert digits_model["accuracy"] > 0.6  # ten classes: chance is 0.1


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_both_formats_verified(digits_model: dict, tmp_path: Path,
                                               precision: str) -> None:
    entries = _export(digits_model, tmp_path, precision=precision)
    assert [e["format"] for e in entries] == ["tflite", "onnx"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == sorted(e["path"] for e in entries)
    for entry in entries:
        tag = "-c48" if precision == "int8" else ""  # calibration samples change int8 bytes
        assert entry["path"] == f"mobilenet_v1-w0.25-r32{tag}_{precision}.{entry['format']}"
        data = (tmp_path / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"] and entry["precision"] == precision
        check = entry["verification"]
        assert check["passed"] and check["enforced"], check
        assert entry["macs"] > 0 and entry["tools"]["tensorflow"] != "not installed"
        nchw = entry["format"] == "onnx"  # ONNX is NCHW by default, TFLite always NHWC
        assert entry["inputs"][0]["shape"] == ([1, 3, 32, 32] if nchw else [1, 32, 32, 3])
    quantized = precision in ("dynamic", "int8")
    for entry in entries:
        metrics = entry["verification"]["metrics"]
        if quantized:
            assert metrics["cosine"] >= 0.98 and metrics["top1_agreement"] >= 0.8
            assert metrics["sqnr_db"] >= 12
        else:
            assert metrics["max_abs_error"] <= (0.05 if precision == "fp16" else 1e-3)
    assert all((e["calibration"] is not None) == (precision == "int8") for e in entries)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_int8_tflite_is_integer_end_to_end(digits_model: dict, tmp_path: Path) -> None:
    entries = _export(digits_model, tmp_path, precision="int8", io_type="int8",
                      labels=tuple(str(d) for d in range(10)))
    tfl = next(e for e in entries if e["format"] == "tflite")
    data = (tmp_path / tfl["path"]).read_bytes()
    ops = tflite_quant.op_details(data)
    assert "QUANTIZE" not in {o["op_name"] for o in ops} and "DEQUANTIZE" not in {
        o["op_name"] for o in ops}
    assert _float_op_outputs(data) == []  # every op computes in int8
    assert tfl["inputs"][0]["dtype"] == "int8" and tfl["inputs"][0]["scale"] > 0
    assert tfl["outputs"][0]["dtype"] == "int8"
    meta = tflite_export.read_metadata(data)
    assert meta["name"] == "mobilenet_v1" and meta["labels"][3] == "3"
    assert meta["normalization"] == {"mean": [127.5] * 3, "std": [127.5] * 3}
    onx = next(e for e in entries if e["format"] == "onnx")
    proto = _load_onnx(tmp_path / onx["path"])
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["name"] == "mobilenet_v1" and json.loads(props["labels"])[9] == "9"
    assert _per_channel_weights(proto)


def _float_op_outputs(data: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    return [op["op_name"] for op in interpreter._get_ops_details()  # noqa: SLF001
            if any(dtypes[i].kind == "f" for i in op["outputs"])]


def _load_onnx(path: Path):
    import onnx

    return onnx.load(path)


def _per_channel_weights(proto) -> bool:
    """A DequantizeLinear of a conv weight has one scale per output channel."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            if inits[node.input[0]].ndim == 4 and inits[node.input[1]].size > 1:
                return True
    return False


def test_same_inputs_give_byte_identical_artifacts(digits_model: dict, tmp_path: Path) -> None:
    first = _export(digits_model, tmp_path / "a", precision="int8")
    second = _export(digits_model, tmp_path / "b", precision="int8")
    assert [e["sha256"] for e in first] == [e["sha256"] for e in second]
    for entry in first:
        assert (tmp_path / "a" / entry["path"]).read_bytes() == (
            tmp_path / "b" / entry["path"]).read_bytes()


def test_onnx_is_nchw_by_default_without_transposes(digits_model: dict, tmp_path: Path) -> None:
    entries = _export(digits_model, tmp_path, formats=("onnx",))
    assert entries[0]["path"] == "mobilenet_v1-w0.25-r32_fp32.onnx"
    assert entries[0]["layout"] == "nchw" and entries[0]["inputs"][0]["shape"] == [1, 3, 32, 32]
    proto = _load_onnx(tmp_path / entries[0]["path"])
    assert not [n for n in proto.graph.node if n.op_type == "Transpose"]
    assert entries[0]["verification"]["passed"]
    # onnxruntime's mobile usability checker, per EP, in the manifest
    mobile = {v["ep"]: v for v in entries[0]["mobile"]}
    assert set(mobile) == {"nnapi", "coreml-neuralnetwork", "coreml-mlprogram"}
    assert all(v["partitions"] == 1 and v["fit"] == "yes" for v in mobile.values())
    assert mobile["nnapi"]["nodes"] == len(proto.graph.node)


def test_nhwc_onnx_is_named_and_has_one_input_transpose(digits_model: dict,
                                                        tmp_path: Path) -> None:
    entries = _export(digits_model, tmp_path, formats=("onnx",), layout="nhwc")
    assert entries[0]["path"] == "mobilenet_v1-w0.25-r32-nhwc_fp32.onnx"
    assert entries[0]["inputs"][0]["shape"] == [1, 32, 32, 3]
    proto = _load_onnx(tmp_path / entries[0]["path"])
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 1
    assert entries[0]["verification"]["passed"]


def test_keep_float_leaves_named_layers_in_float(digits_model: dict, tmp_path: Path) -> None:
    entries = _export(digits_model, tmp_path, precision="int8", keep_float=("stem.conv",))
    tfl = next(e for e in entries if e["format"] == "tflite")
    data = (tmp_path / tfl["path"]).read_bytes()
    floats = [op for op in tflite_quant.op_details(data)
              if any("stem.conv" in name for name in op["output_names"])]
    assert floats and _float_op_outputs(data)  # the stem computes in float now
    proto = _load_onnx(tmp_path / next(e["path"] for e in entries if e["format"] == "onnx"))
    producer = {o: n for n in proto.graph.node for o in n.output}
    relu = next(n for n in proto.graph.node if n.op_type == "Relu" and "stem.act" in n.name)
    conv = producer[relu.input[0]]  # a float stem feeds its ReLU directly, no Q/DQ pair
    assert conv.op_type == "Conv" and producer.get(conv.input[1]) is None  # float weight
    assert all(e["keep_float"] == ["stem.conv"] for e in entries)


def test_threshold_failure_names_metric_and_margin(digits_model: dict, tmp_path: Path) -> None:
    strict = Thresholds(min_sqnr_db=200.0)
    with pytest.raises(VerificationFailed, match=r"sqnr_db .* is below 200 dB by"):
        _export(digits_model, tmp_path, precision="int8", formats=("tflite",),
                thresholds=strict)
    assert not list(tmp_path.glob("*"))  # a failed artifact is not written, nor a manifest


def test_manifest_merges_and_lists_only_existing_files(digits_model: dict,
                                                       tmp_path: Path) -> None:
    _export(digits_model, tmp_path, formats=("tflite",))
    _export(digits_model, tmp_path, formats=("tflite",), precision="fp16")
    (tmp_path / "mobilenet_v1-w0.25-r32_fp32.tflite").unlink()
    _export(digits_model, tmp_path, formats=("onnx",))
    paths = [a["path"] for a in json.loads((tmp_path / "manifest.json").read_text())["artifacts"]]
    assert paths == ["mobilenet_v1-w0.25-r32_fp16.tflite", "mobilenet_v1-w0.25-r32_fp32.onnx"]


def test_sensitivity_ranks_layers_worst_first(digits_model: dict) -> None:
    from exporter.pipeline import build_or_load, calibrate
    from quant.sensitivity import IDEAL_RMSE_STEPS, layer_sensitivity

    knobs, weights = digits_model["knobs"], digits_model["weights"]
    source = build_or_load("mobilenet_v1", knobs=knobs, weights=weights)
    calib = calibrate(source, ExportOptions(precision="int8", calib=digits_model["calib"],
                                            calib_samples=32))
    rows = layer_sensitivity(source.model, calib.calibration)
    steps = [r.rmse_steps for r in rows]
    assert steps == sorted(steps, reverse=True) and [r.rank for r in rows][:3] == [1, 2, 3]
    names = {layer.name for layer in source.model.layers}
    assert all(r.layer in names for r in rows if r.layers)
    assert {"stem.conv", "classifier.fc"} <= {r.layer for r in rows}
    assert steps[-1] < 2 * IDEAL_RMSE_STEPS  # most ops are near rounding noise


def test_random_init_is_reported_not_enforced(tmp_path: Path) -> None:
    opts = ExportOptions(precision="int8", formats=("tflite",), calib_samples=8, held_out=4,
                         thresholds=Thresholds(min_sqnr_db=200.0))
    result = export("squeezenet1_1", knobs={"resolution": 64}, options=opts, out=tmp_path)
    entry = result.entries[0]
    assert entry.weights == "random-init" and entry.verification.enforced is False
    assert entry.calibration.kind == "default"
    assert any("do not represent your data" in w for w in result.warnings)


def test_options_are_checked_before_any_work(tmp_path: Path) -> None:
    from mobilectl.core.errors import UserError

    bad = [
        (dict(io_type="int8"), "--io int8 needs --int8"),
        (dict(precision="int8", layout="nhwc", formats=("tflite",)), "--layout nhwc applies to ONNX"),
        (dict(formats=("tflite", "coreml")), "--format 'coreml' is not allowed"),
        (dict(keep_float=("stem.conv",)), "--keep-float needs --int8"),
    ]
    for fields, message in bad:
        with pytest.raises(UserError, match=message):
            export("mobilenet_v1", options=replace(ExportOptions(), **fields), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


FAMILIES = [spec.name for spec in __import__("models_keras.registry", fromlist=["x"]).family_representatives()]


@pytest.mark.parametrize("model", FAMILIES)
def test_int8_export_of_every_family(model: str, tmp_path: Path) -> None:
    """Full-integer TFLite and QDQ ONNX for one model per family (small input)."""
    from models_keras.registry import get_model_spec

    res = get_model_spec(model).test_resolution
    opts = ExportOptions(precision="int8", calib_samples=4, held_out=2)
    result = export(model, knobs={"resolution": res, "num_classes": 10}, options=opts, out=tmp_path)
    assert [e.format for e in result.entries] == ["tflite", "onnx"]
    for entry in result.entries:
        assert entry.verification.metrics["cosine"] > 0.5  # it runs and means something
