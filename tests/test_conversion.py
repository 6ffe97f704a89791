"""One real conversion per family: TFLite and ONNX, builtin ops only, same numbers.

The allowed op lists below are the proof the zoo needs no Flex or custom ops; a new
op type fails the test until someone looks at it and adds it here.
"""

from __future__ import annotations

import numpy as np
import pytest

from exporter import onnx as onnx_export
from exporter import tflite as tflite_export
from models_keras.registry import ModelSpec, family_representatives

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


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.family)
def test_converts_with_builtin_ops_and_same_numbers(spec: ModelSpec) -> None:
    model = spec.build(resolution=spec.test_resolution, num_classes=10)
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

    if spec.family.startswith("shufflenet"):  # the channel shuffle lowers to these
        assert {"RESHAPE", "TRANSPOSE"} <= ops and {"Reshape", "Transpose"} <= types
