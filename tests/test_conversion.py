"""One real conversion per family: TFLite and ONNX, builtin ops only, same numbers,
and the FLOPs proxy read from each file agrees with the Keras count.

The allowed op lists below are the proof the zoo needs no Flex or custom ops; a new
op type fails the test until someone looks at it and adds it here.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from exporter import onnx as onnx_export
from exporter import onnx_mobile
from exporter import tflite as tflite_export
from device_profiles import layer_map, onnx_cost, tflite_cost
from models_keras.analysis import analyze_model
from models_keras.layers import StridedDilatedDepthwiseConv2D
from models_keras.registry import ModelSpec, family_representatives
from mobilectl.core.types import Layout

TFLITE_BUILTINS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "SUB", "RELU",
    "RELU6", "LEAKY_RELU", "PRELU", "HARD_SWISH", "LOGISTIC", "SOFTMAX", "MEAN", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "CONCATENATION", "RESHAPE", "TRANSPOSE", "SPLIT", "SPLIT_V", "PAD",
    "STRIDED_SLICE", "DIV", "MINIMUM", "MAXIMUM", "QUANTIZE", "DEQUANTIZE", "DELEGATE",
}
ONNX_STANDARD = {
    "Conv", "Add", "Mul", "Sub", "Div", "Relu", "Clip", "LeakyRelu", "PRelu", "HardSwish",
    "HardSigmoid", "Sigmoid", "Softmax", "GlobalAveragePool", "ReduceMean", "AveragePool",
    "MaxPool", "Concat", "Reshape", "Transpose", "Split", "Pad", "MatMul", "Gemm", "Flatten",
    "Squeeze", "Unsqueeze", "Identity", "Slice", "Max", "Min", "Neg", "Gather",
}
FAMILIES = family_representatives()
#: onnxruntime's mobile usability checker on each family's ONNX graph before the lean
#: passes, (partitions, unsupported nodes) per EP: the lean graph may be no worse on
#: either (every family not named: one partition, no unsupported node, for each EP)
MOBILE_BEFORE = {
    "espnetv2": {"coreml-neuralnetwork": (55, 57), "coreml-mlprogram": (55, 58)},
    "nasnet": {"coreml-mlprogram": (4, 4)},  # its 1-pixel shift: Pad, which ML programs lack
    "squeezenet": {"coreml-mlprogram": (2, 1)},
}
#: ops an architecture itself needs beyond convs and activations (NASNet's shift of its
#: adjust path is a Pad and a Slice)
ARCHITECTURE_OPS = {"nasnet": {"Pad": 4, "Slice": 4}}
RESHAPES = {"Reshape", "Squeeze", "Unsqueeze", "Flatten"}


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.family)
def test_converts_with_builtin_ops_and_same_numbers(spec: ModelSpec) -> None:
    # 64 px at least: the last stage at 2x2, not 1x1, where tf2onnx writes layout
    # changes as Reshapes (a 1x1 map is a corner case, not how the graphs look)
    model = spec.build(resolution=max(64, spec.test_resolution), num_classes=10)
    _nonzero_biases(model)
    x = np.random.default_rng(1).uniform(-1, 1, (1, *model.input_shape[1:])).astype("float32")
    expected = np.asarray(model(x, training=False))

    flatbuffer = tflite_export.convert(model)
    ops = set(tflite_export.op_types(flatbuffer))
    assert ops <= TFLITE_BUILTINS, f"{spec.name}: unexpected TFLite ops {ops - TFLITE_BUILTINS}"
    np.testing.assert_allclose(tflite_export.run(flatbuffer, x), expected, atol=1e-4)

    proto = onnx_export.convert(model, layout=Layout.NCHW)
    onnx_ops = onnx_export.op_types(proto)
    assert {domain for domain, _ in onnx_ops} <= {"", "ai.onnx"}, f"{spec.name}: custom domain"
    types = {op for _, op in onnx_ops}
    assert types <= ONNX_STANDARD, f"{spec.name}: unexpected ONNX ops {types - ONNX_STANDARD}"
    np.testing.assert_allclose(onnx_export.run(proto, x, layout=Layout.NCHW), expected, atol=1e-4)

    # ONNX runs ESPNetv2's strided dilated convs at stride 2; TFLite subsamples
    for fmt, cost, macs in (
            ("tflite", tflite_cost.analyze(flatbuffer, name=spec.name), _computed_macs(model)),
            ("onnx", onnx_cost.analyze(proto, name=spec.name), analyze_model(model).macs)):
        assert cost.unknown == (), f"{spec.name} {fmt}: ops without a cost rule {cost.unknown}"
        assert abs(cost.macs / macs - 1) < 0.005, (spec.name, fmt, cost.macs, macs)

    nhwc = onnx_export.convert(model, layout=Layout.NHWC)
    np.testing.assert_allclose(onnx_export.run(nhwc, x, layout=Layout.NHWC), expected, atol=1e-4)
    _assert_lean(spec, model, proto)
    _assert_mobile_no_worse(spec, proto)
    _assert_layers_mapped(spec, model, tflite_cost.file_ops(flatbuffer), "tflite")
    _assert_layers_mapped(spec, model, onnx_cost.file_ops(proto), "onnx")

    if spec.family.startswith("shufflenet"):  # the channel shuffle lowers to these
        assert {"RESHAPE", "TRANSPOSE"} <= ops and {"Reshape", "Transpose"} <= types
        _assert_gather_shuffles(model, x, expected)


def _assert_lean(spec: ModelSpec, model, proto) -> None:
    """The NCHW graph as a native export has it: a Transpose only per channel shuffle,
    batch norm folded (no constant Mul right after a Conv), no chained reshapes, no
    Neg/Pad/Slice beyond what the architecture needs."""
    types = [node.op_type for node in proto.graph.node]
    shuffles = sum(layer.name.endswith("shuffle") for layer in model.layers)
    assert types.count("Transpose") <= shuffles, (spec.name, types.count("Transpose"), shuffles)
    allowed = ARCHITECTURE_OPS.get(spec.family, {})
    for op in ("Neg", "Pad", "Slice"):
        assert types.count(op) <= allowed.get(op, 0), (spec.name, op, types.count(op))
    producer = {out: node for node in proto.graph.node for out in node.output}
    consts = {init.name for init in proto.graph.initializer}
    concat_scales = 0
    for node in proto.graph.node:
        before = [producer[name].op_type for name in node.input if name in producer]
        if node.op_type == "Mul" and "Conv" in before:
            assert not consts & set(node.input), f"{spec.name}: unfolded scale {node.name}"
        if node.op_type == "Mul" and "Concat" in before and consts & set(node.input):
            concat_scales += 1
        if node.op_type in RESHAPES:
            assert not RESHAPES & set(before), f"{spec.name}: reshape chain at {node.name}"
    # the one scale no pass can fold: a batch norm right after a concatenation
    # (ESPNetv2's EESP fusion, whose slices are running sums of branches, then PReLU)
    assert concat_scales == _batch_norms_after_concat(model), (spec.name, concat_scales)


def _batch_norms_after_concat(model) -> int:
    """How many BatchNormalization layers take a Concatenate's output directly."""
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            source = layer.input._keras_history.operation
            count += isinstance(source, keras.layers.Concatenate)
    return count


def _assert_gather_shuffles(model, x, expected) -> None:
    """For onnxruntime's CPU EP each channel shuffle is one Gather, with the same numbers."""
    proto = onnx_export.convert(model, layout=Layout.NCHW, fuse_hard_activations=True)
    types = [node.op_type for node in proto.graph.node]
    shuffles = sum(layer.name.endswith("shuffle") for layer in model.layers)
    assert types.count("Gather") == shuffles and "Transpose" not in types, types
    np.testing.assert_allclose(onnx_export.run(proto, x, layout=Layout.NCHW), expected, atol=1e-4)


def _assert_layers_mapped(spec: ModelSpec, model, ops, fmt: str) -> None:
    """Per-layer latency can name every Keras layer that computes: each layer with MACs
    is named by some op of the file (the names the converter leaves); the only op tied
    to no layer is TFLite's softmax on the model output."""
    known = layer_map.known_layers(ops)
    mapped = {layer for op in ops for layer in layer_map.op_layers(op, known)}
    costly = {row.name for row in analyze_model(model).layers if row.macs > 0}
    assert costly <= mapped, (spec.name, fmt, sorted(costly - mapped)[:5])
    assert mapped <= {layer.name for layer in model.layers}, (spec.name, fmt, sorted(
        mapped - {layer.name for layer in model.layers})[:5])
    unmapped = [op.kind for op in ops if not layer_map.op_layers(op, known)]
    assert unmapped in ([], ["SOFTMAX"]), (spec.name, fmt, unmapped)


def _assert_mobile_no_worse(spec: ModelSpec, proto) -> None:
    for verdict in onnx_mobile.usability(onnx_export.serialize(proto)):
        limit = MOBILE_BEFORE.get(spec.family, {}).get(str(verdict.ep), (1, 0))
        assert verdict.partitions <= limit[0] and verdict.unsupported_nodes <= limit[1], (
            spec.name, verdict)


def _nonzero_biases(model) -> None:
    """Biases and batch-norm statistics away from their initial zeros and ones, as in a
    trained model (converters fold or drop zero biases, which hides real graph shapes)."""
    rng = np.random.default_rng(3)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([w + np.abs(rng.normal(0, 0.05, w.shape)).astype(w.dtype)
                               if w.ndim == 1 else w for w in weights])


def _computed_macs(model) -> int:
    """The Keras count plus what the files really compute beyond it: ESPNetv2's strided
    dilated depthwise convs run at stride 1 and are subsampled (the proxy counts the
    kept outputs, as the paper does)."""
    extra = 0
    for layer in model.layers:
        if isinstance(layer, StridedDilatedDepthwiseConv2D):
            h, w, c = layer.input.shape[1:]
            kh, kw = layer.kernel_size
            extra += h * w * c * kh * kw - prod_out(layer) * kh * kw
    return analyze_model(model).macs + extra


def prod_out(layer) -> int:
    h, w, c = layer.output.shape[1:]
    return h * w * c


def test_hard_swish_fused_for_pc_targets_only() -> None:
    """x86 targets (onnxruntime's CPU EP) get MobileNet V3's h-swish and h-sigmoid as
    single ops, the same numbers; ARM targets keep Add/Clip/Mul, which NNAPI takes."""
    from exporter import onnx_lean
    from models_keras.registry import get_model_spec

    assert onnx_lean.fuses_hard_activations("x86_64")
    assert not onnx_lean.fuses_hard_activations("arm64-v8a")
    spec = get_model_spec("mobilenet_v3_large")
    model = spec.build(resolution=64, num_classes=10)
    _nonzero_biases(model)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    fused = onnx_export.convert(model, layout=Layout.NCHW, fuse_hard_activations=True)
    types = [node.op_type for node in fused.graph.node]
    # 21 h-swish (the classifier's may stay Add/Clip/Mul where onnxruntime folded its +3
    # into a second Gemm) and 8 squeeze-excite h-sigmoid gates
    assert types.count("HardSigmoid") == 8 and types.count("Clip") <= 1, types
    assert types.count("HardSwish") + types.count("Clip") == 21, types
    np.testing.assert_allclose(onnx_export.run(fused, x, layout=Layout.NCHW),
                               np.asarray(model(x, training=False)), atol=1e-4)
