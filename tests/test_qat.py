"""Quantization-aware training: the rewrite (batch norm folded exactly, ranges where
the integer graph needs them), and ``mobilectl qat`` end to end on the digits: full
int8 TFLite without calibration data, ONNX with the trained integer weights, 4-bit
weights as the converter's INT4 tensors, byte-identical reruns, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import error_line, run
from mobilectl.core.manifest import read_manifest
from quant import qat

BASE = ["mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes", "10"]


def test_batch_norm_folds_exactly_and_ranges_follow_the_integer_graph() -> None:
    """Every BN of MobileNet V2 folds, exactly (checked on the stem); a conv followed by
    its BN and ReLU6 has one range, after the ReLU6; the softmax has TFLite's fixed one."""
    import keras

    from models_keras import build_model
    from models_keras.training import trained_scales

    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v2", resolution=32, width_multiplier=0.35, num_classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    trained_scales(model, x)  # batch-norm statistics that are not the identity
    chosen = qat.plan(model)
    bns = [layer.name for layer in model.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert sorted(chosen.folds) == sorted(bns)
    assert "stem.conv" not in chosen.ranges and "stem.bn" not in chosen.ranges
    assert "stem.act" in chosen.ranges and not chosen.ranges["stem.act"]
    assert chosen.ranges["classifier.softmax"] and not chosen.ranges["classifier.fc"]
    conv, norm = model.get_layer("stem.conv"), model.get_layer("stem.bn")
    assert chosen.folds["stem.bn"] == "stem.conv"
    folded = qat.fold_batch_norm(conv, norm)
    before = keras.Model(model.input, conv.input)(x, training=False)
    expected = keras.Model(model.input, norm.output)(x, training=False)
    twin = conv.__class__.from_config({**conv.get_config(), "use_bias": True})
    twin.build(before.shape)
    twin.set_weights([folded.kernel, folded.bias])
    np.testing.assert_allclose(twin(before), expected, atol=1e-4)


def test_squeeze_excite_and_hard_swish_convert_fully_to_int8() -> None:
    """MobileNet V3 Small: every op of the QAT model's TFLite is int8 (the hard-sigmoid
    gates too), and hard-swish is written in the ops XNNPACK runs, not ``HARD_SWISH``."""
    import keras

    from exporter import tflite
    from models_keras import build_model
    from models_keras.training import trained_scales
    from mobilectl.core.types import Precision

    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v3_small", resolution=32, num_classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    trained_scales(model, x)
    rewritten = qat.qat_model(model, weight_bits=8)
    qat.calibrate_ranges(rewritten, x)
    flatbuffer = tflite.convert(rewritten, precision=Precision.INT8, trained_ranges=True)
    assert _float_ops(flatbuffer) == []
    ops = tflite.op_types(flatbuffer)
    assert "HARD_SWISH" not in ops and "MINIMUM" in ops
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1  # the float I/O only
    assert qat.weight_bits_of(rewritten) == 8 and qat.weight_bits_of(model) is None


def test_weight_quantization_grids() -> None:
    """8 and 4 bits: 2**(b-1) - 1 levels each side over the channel's largest weight;
    2 bits: ternary, {-1, 0, 1} times 1.4 mean |w| per channel."""
    w = np.random.default_rng(1).normal(size=(3, 3, 4, 6)).astype(np.float32)
    for bits, levels in ((8, 127), (4, 7), (2, 1)):
        q = np.asarray(qat.weight_quant(w, bits=bits, axis=-1))
        for c in range(w.shape[-1]):
            values = np.unique(np.round(q[..., c] / np.max(np.abs(q[..., c])) * levels))
            assert len(values) <= 2 * levels + 1 and np.max(np.abs(values)) == levels
    ternary = np.asarray(qat.weight_quant(w, bits=2, axis=-1))
    level = qat.TERNARY_SCALE * np.mean(np.abs(w), axis=(0, 1, 2))
    np.testing.assert_allclose(np.max(np.abs(ternary), axis=(0, 1, 2)), level, rtol=1e-5)


def _ops(flatbuffer: bytes) -> list[tuple[int, Any, Any]]:
    """Each op of a .tflite model's main graph: builtin code, the op, the graph."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    graph = model.subgraphs[0]
    return [(model.operatorCodes[op.opcodeIndex].builtinCode, op, graph)
            for op in graph.operators]


def _float_ops(flatbuffer: bytes) -> list[str]:
    """Ops (besides the I/O QUANTIZE/DEQUANTIZE) with a float32 output."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names[code] for code, op, graph in _ops(flatbuffer)
            if names[code] not in ("QUANTIZE", "DEQUANTIZE")
            and any(graph.tensors[i].type == schema.TensorType.FLOAT32 for i in op.outputs)]


def _weight_types(flatbuffer: bytes) -> set[int]:
    """The tensor types of the conv and depthwise conv weights."""
    from tensorflow.lite.python import schema_py_generated as schema

    convs = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    return {graph.tensors[op.inputs[1]].type for code, op, graph in _ops(flatbuffer)
            if code in convs}


def _qat(bits: int, digits_model: dict, digits_npz: Path, out: Path, capsys) -> dict:
    code, text, err = run(["qat", *BASE, "--weights", digits_model["weights"], "--data",
                           str(digits_npz), "--epochs", "1", "--weight-bits", str(bits),
                           "--out", str(out), "--json"], capsys)
    assert code == 0, err
    return json.loads(text)


def test_qat_int8_end_to_end(digits_model: dict, digits_npz: Path, tmp_path: Path,
                             capsys) -> None:
    report = _qat(8, digits_model, digits_npz, tmp_path / "q8", capsys)
    assert report["float_top1"] > 0.6
    assert report["qat_top1"] >= report["float_top1"] - 0.03
    by_format = {a["format"]: a for a in report["artifacts"]}
    assert set(by_format) == {"tflite", "onnx"}
    for artifact in by_format.values():  # the artifacts compute what the QAT model does
        assert abs(artifact["top1"] - report["qat_top1"]) <= 0.02, artifact
    flatbuffer = (tmp_path / "q8" / by_format["tflite"]["path"]).read_bytes()
    assert _float_ops(flatbuffer) == []  # full integer, with no representative dataset
    entries = {e.format: e for e in read_manifest(tmp_path / "q8").artifacts}
    for entry in entries.values():
        assert entry.quantization.trained_ranges and entry.quantization.weights == "int8"
        assert (entry.derivation.method, entry.derivation.weight_bits) == ("qat", 8)
        assert entry.accuracy is not None  # measured on the artifact (eval's code)
    code, text, err = run(["eval", str(tmp_path / "q8"), "--data", str(digits_npz),
                           "--val-split", "0.2", "--json"], capsys)
    assert code == 0, err
    rows = {r["format"]: r for r in json.loads(text)["results"]}
    assert rows["tflite"]["top1"] == pytest.approx(by_format["tflite"]["top1"])
    code, _, err = run(["export", report["keras"], "--format", "tflite", "--out",
                        str(tmp_path / "fp32")], capsys)
    assert "export it with --int8, not as fp32" in error_line(code, err)


def test_qat_4bit_weights_are_int4_and_reruns_are_identical(digits_model: dict,
                                                            digits_npz: Path, tmp_path: Path,
                                                            capsys) -> None:
    import onnx
    from onnx import numpy_helper

    first = _qat(4, digits_model, digits_npz, tmp_path / "a", capsys)
    again = _qat(4, digits_model, digits_npz, tmp_path / "b", capsys)
    for artifact in first["artifacts"]:
        a = (tmp_path / "a" / artifact["path"]).read_bytes()
        assert a == (tmp_path / "b" / artifact["path"]).read_bytes(), artifact["path"]
        assert artifact["weights"] == "int4"
    keras_a = Path(first["keras"]).read_bytes()
    assert keras_a == Path(again["keras"]).read_bytes()
    by_format = {a["format"]: a for a in first["artifacts"]}
    from tensorflow.lite.python import schema_py_generated as schema

    flatbuffer = (tmp_path / "a" / by_format["tflite"]["path"]).read_bytes()
    assert _weight_types(flatbuffer) == {schema.TensorType.INT4}
    proto = onnx.load(tmp_path / "a" / by_format["onnx"]["path"])
    constants = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weights = [constants[node.input[0]] for node in proto.graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in constants
               and constants[node.input[0]].dtype == np.int8]
    assert len(weights) >= 14  # every conv and the classifier: 4-bit values in int8
    assert max(int(np.max(np.abs(w))) for w in weights) == 7


def test_qat_bad_input(digits_model: dict, digits_npz: Path, tmp_path: Path, capsys) -> None:
    data = ["--data", str(digits_npz), "--out", str(tmp_path / "q")]
    cases = [
        (["qat", *BASE, *data, "--weight-bits", "3"], "--weight-bits 3 is not allowed: one of 8, 4, 2"),
        (["qat", *BASE, *data, "--epochs", "-1"], "--epochs -1 is not allowed"),
        (["qat", *BASE, *data, "--lr", "0"], "--lr 0 is not allowed"),
        (["qat", "shufflenet_v1", "-r", "64", "--num-classes", "10", *data],
         "layer(s): stage2.unit1.gconv2.conv (GroupConv2D, 3 groups), "),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert message in error_line(code, err), (argv, err)
    assert not (tmp_path / "q").exists()


#: families whose layers QAT cannot fake-quantize, and the layer type that blocks them
QAT_REFUSED = {"shufflenet_v1": "GroupConv2D", "xception": "SeparableConv2D",
               "mixnet": "GroupConv2D", "espnetv2": "GroupConv2D",
               "factorized": "GroupConv2D", "nasnet": "SeparableConv2D"}


def _family_cases() -> list[Any]:
    from models_keras.registry import family_representatives

    return [pytest.param(spec.name, spec.family, id=spec.family)
            for spec in family_representatives()]


@pytest.mark.parametrize("name, family", _family_cases())
def test_every_family_converts_to_int8_or_is_refused_by_name(name: str, family: str) -> None:
    """One real QAT conversion per family of the registry: TFLite int8 from the trained
    ranges with every convolution's weights int8, or a refusal naming the layers."""
    import keras

    from exporter import tflite
    from mobilectl.core.errors import UserError
    from mobilectl.core.types import Precision
    from models_keras.registry import get_model_spec
    from models_keras.training import trained_scales
    from tensorflow.lite.python import schema_py_generated as schema

    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    spec = get_model_spec(name)
    small = {"resolution": 64} if "resolution" in spec.resolve() and family not in QAT_REFUSED \
        else {}  # refused ones are only built (Xception's smallest input is 71)
    knobs = spec.resolve(**small)
    model = spec.build(**knobs)
    if family in QAT_REFUSED:
        with pytest.raises(UserError, match=rf"cannot fake-quantize \d+ layer\(s\): \S+ "
                                            rf"\({QAT_REFUSED[family]}"):
            qat.qat_model(model, weight_bits=8)
        return
    x = np.random.default_rng(0).uniform(-1, 1, (8, *model.input_shape[1:])).astype(np.float32)
    trained_scales(model, x)
    rewritten = qat.qat_model(model, weight_bits=8)
    qat.calibrate_ranges(rewritten, x)
    flatbuffer = tflite.convert(rewritten, precision=Precision.INT8, trained_ranges=True)
    assert _weight_types(flatbuffer) == {schema.TensorType.INT8}
