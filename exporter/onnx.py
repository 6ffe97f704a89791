"""Keras -> ONNX with tf2onnx (explicit batch-1 input signature, opset 17)."""

from __future__ import annotations

from typing import Any

DEFAULT_OPSET = 17


def convert(model: Any, *, opset: int = DEFAULT_OPSET) -> Any:
    """Convert a Keras model to an ``onnx.ModelProto`` with input ``input``."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return proto


def op_types(proto: Any) -> list[tuple[str, str]]:
    """(domain, op type) of every node; the standard domain is ``""``."""
    return [(node.domain, node.op_type) for node in proto.graph.node]


def run(proto: Any, x: Any) -> Any:
    """Run an ONNX model on one input with onnxruntime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]
