"""``mobilectl info FILE``: the FLOPs proxy read from .keras, .tflite and .onnx files.
(Agreement with the Keras count for every family is in tests/test_conversion.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import error_line, run

KNOBS = ["--knob", "cell_repeats=1", "--knob", "penultimate_filters=192", "-r", "32",
         "--num-classes", "10"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small NASNet (the most fragmented family) as .keras, fp32 and int8 .tflite,
    .onnx, and an .onnx whose batch dimension is dynamic."""
    import onnx

    from exporter import onnx as onnx_export
    from exporter import tflite as tflite_export
    from models_keras import build_model
    from mobilectl.core.types import Precision

    root = tmp_path_factory.mktemp("files")
    model = build_model("nasnet_mobile", cell_repeats=1, penultimate_filters=192,
                        resolution=32, num_classes=10)
    model.save(root / "nas.keras")
    (root / "nas.tflite").write_bytes(tflite_export.convert(model))
    calib = __import__("numpy").random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3))
    (root / "nas_int8.tflite").write_bytes(tflite_export.convert(
        model, precision=Precision.INT8, calibration=calib.astype("float32")))
    proto = onnx_export.convert(model)
    (root / "nas.onnx").write_bytes(onnx_export.serialize(proto))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(proto, root / "dynamic.onnx")
    return {p.name: p for p in root.iterdir()}


def _info(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, err = run(["info", *argv, "--json"], capsys)
    assert code in (0, None), err
    return json.loads(out)


def test_keras_tflite_and_onnx_files_agree_with_the_registry(
        files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    zoo = _info(["nasnet_mobile", *KNOBS], capsys)
    for name in ("nas.keras", "nas.tflite", "nas_int8.tflite", "nas.onnx"):
        info = _info([str(files[name])], capsys)
        assert abs(info["macs"] / zoo["macs"] - 1) < 0.005, name
        assert info["input"] == [32, 32, 3] and not info["macs_lower_bound"], name
    keras_file = _info([str(files["nas.keras"]), "--per-layer"], capsys)
    assert keras_file["macs"] == zoo["macs"] and keras_file["params"] == zoo["params"]
    assert "cell1.normal.block1.left.sep5x5.conv1" in {r["name"] for r in keras_file["layers"]}


def test_weights_are_sized_by_dtype(files: dict[str, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    fp32 = _info([str(files["nas.tflite"])], capsys)["weight_bytes"]
    int8 = _info([str(files["nas_int8.tflite"])], capsys)["weight_bytes"]
    assert "int8" not in fp32 and fp32["float32"] > 4 * int8.get("float32", 0)
    assert 3.5 < fp32["float32"] / int8["int8"] < 4.5  # weights stored as int8, biases int32
    rows = _info([str(files["nas_int8.tflite"]), "--per-layer"], capsys)["layers"]
    assert any(r["type"] == "DEPTHWISE_CONV_2D" and r["macs"] > 0 for r in rows)


def test_dynamic_onnx_input_needs_a_shape(files: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(*run(["info", str(files["dynamic.onnx"])], capsys)[::2])
    assert "input 'input' has a dynamic shape (?, 32, 32, 3); give --input-shape" in line
    fixed = _info([str(files["dynamic.onnx"]), "--input-shape", "1,32,32,3"], capsys)
    assert fixed["macs"] == _info([str(files["nas.onnx"])], capsys)["macs"]
    line = error_line(*run(["info", str(files["dynamic.onnx"]), "--input-shape", "1,32,32"],
                           capsys)[::2])
    assert "has rank 3; input 'input'" in line and "rank 4" in line
    line = error_line(*run(["info", str(files["dynamic.onnx"]), "--input-shape", "1,64,64,3"],
                           capsys)[::2])
    assert "does not fit input 'input'" in line


def test_truncated_files_are_refused(files: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("nas.tflite", "nas.onnx", "nas.keras"):
        cut = tmp_path / name
        cut.write_bytes(files[name].read_bytes()[:4000])
        line = error_line(*run(["info", str(cut)], capsys)[::2])
        assert str(cut) in line and ("not a valid" in line or "not a .keras archive" in line)


def test_unknown_ops_make_a_lower_bound(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An op without a cost rule is listed by name and count; the totals say they are
    lower bounds (a hand-built ONNX graph: Conv, then LRN twice)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("LRN", ["c"], ["l1"], size=3, name="lrn1"),
             helper.make_node("LRN", ["l1"], ["y"], size=3, name="lrn2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 4, 6, 6])], [weight])
    path = tmp_path / "lrn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    info = _info([str(path)], capsys)
    assert info["macs"] == 4 * 6 * 6 * 27 and info["macs_lower_bound"]
    assert info["unknown_ops"] == {"LRN": 2}
    code, out, _ = run(["info", str(path)], capsys)
    assert "MACs (at least)" in out and "no cost rule for LRN x2" in out


def test_keras_applications_file_with_dynamic_input(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A keras.applications model saved with (None, None, 3) input: refused without a
    shape, counted with one; EfficientNet's Normalization and Rescaling are known."""
    import keras

    path = tmp_path / "effnet.keras"
    keras.applications.EfficientNetB0(weights=None).save(path)
    assert _info([str(path)], capsys)["macs"] > 380e6  # 224x224 fixed by the application
    dynamic = tmp_path / "mnv3.keras"
    keras.applications.MobileNetV3Small(weights=None).save(dynamic)
    line = error_line(*run(["info", str(dynamic)], capsys)[::2])
    assert "unknown dimensions; give a fixed input shape (--input-shape" in line
    info = _info([str(dynamic), "--input-shape", "1,224,224,3"], capsys)
    assert abs(info["macs"] / 56.5e6 - 1) < 0.01 and not info["macs_lower_bound"]


def test_every_readable_suffix_has_a_reader() -> None:
    from mobilectl.info import FILE_READERS
    from mobilectl.modelfile import SUFFIXES

    assert sorted(FILE_READERS) == sorted(SUFFIXES)
