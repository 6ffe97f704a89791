"""One real conversion per family: TFLite and ONNX, builtin ops only, same numbers,
and the FLOPs proxy read from each file agrees with the Keras count.

The allowed op lists below are the proof the zoo needs no Flex or custom ops; a new
op type fails the test until someone looks at it and adds it here.
"""

from __future__ import annotations

import numpy as np
import pytest

from exporter import onnx as onnx_export
from exporter import tflite as tflite_export
from device_profiles import onnx_cost, tflite_cost
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
    "Squeeze", "Unsqueeze", "Identity", "Slice", "Max", "Min", "Neg",
}
FAMILIES = family_representatives()
#: Transposes left in the NCHW ONNX graph where a split/shuffle stops tf2onnx's
#: transpose optimiser (an upper bound, so a regression fails; every other family: 0)
NCHW_TRANSPOSES = {"shufflenet_v1": 181, "shufflenet_v2": 61, "mixnet": 116, "espnetv2": 175,
                   "factorized": 51, "effnet": 1}


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.family)
def test_converts_with_builtin_ops_and_same_numbers(spec: ModelSpec) -> None:
    model = spec.build(resolution=spec.test_resolution, num_classes=10)
    _nonzero_biases(model)
    x = np.random.default_rng(1).uniform(-1, 1, (1, *model.input_shape[1:])).astype("float32")
    expected = np.asarray(model(x, training=False))

    flatbuffer = tflite_export.convert(model)
    ops = set(tflite_export.op_types(flatbuffer))
    assert ops <= TFLITE_BUILTINS, f"{spec.name}: unexpected TFLite ops {ops - TFLITE_BUILTINS}"
    np.testing.assert_allclose(tflite_export.run(flatbuffer, x), expected, atol=1e-4)

    proto = onnx_export.convert(model)
    onnx_ops = onnx_export.op_types(proto)
    assert {domain for domain, _ in onnx_ops} <= {"", "ai.onnx"}, f"{spec.name}: custom domain"
    types = {op for _, op in onnx_ops}
    assert types <= ONNX_STANDARD, f"{spec.name}: unexpected ONNX ops {types - ONNX_STANDARD}"
    np.testing.assert_allclose(onnx_export.run(proto, x), expected, atol=1e-4)

    macs = _computed_macs(model)
    for fmt, cost in (("tflite", tflite_cost.analyze(flatbuffer, name=spec.name)),
                      ("onnx", onnx_cost.analyze(proto, name=spec.name))):
        assert cost.unknown == (), f"{spec.name} {fmt}: ops without a cost rule {cost.unknown}"
        assert abs(cost.macs / macs - 1) < 0.005, (spec.name, fmt, cost.macs, macs)

    nchw = onnx_export.convert(model, layout=Layout.NCHW)
    transposes = sum(op == "Transpose" for _, op in onnx_export.op_types(nchw))
    assert transposes <= NCHW_TRANSPOSES.get(spec.family, 0), (spec.name, transposes)
    np.testing.assert_allclose(onnx_export.run(nchw, x, layout=Layout.NCHW), expected, atol=1e-4)

    if spec.family.startswith("shufflenet"):  # the channel shuffle lowers to these
        assert {"RESHAPE", "TRANSPOSE"} <= ops and {"Reshape", "Transpose"} <= types


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
