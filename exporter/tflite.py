"""Keras -> TFLite with TensorFlow's converter, builtin ops only.

The model is traced with a fixed batch-1 signature, so shapes are static and no
SHAPE/PACK chains appear around reshapes. Conversion never falls back to Flex
(SELECT_TF_OPS): a graph that would need it fails, naming the ops.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from mobilectl.errors import UserError


def convert_float(model: Any) -> bytes:
    """Convert a Keras model to a float32 .tflite flatbuffer (builtin ops only)."""
    import keras
    import tensorflow as tf

    inputs = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="input")
    fixed = keras.Model(inputs, model(inputs, training=False), name=model.name)
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        # Keras' export prints a "Saved artifact" banner on stdout: keep stdout for results.
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert()
    except Exception as exc:  # the converter raises ConverterError with the op list
        ops = [line.strip() for line in str(exc).splitlines() if "op" in line.lower()]
        raise UserError(f"{model.name} needs ops outside TFLite's builtins: "
                        f"{'; '.join(ops[:3]) or type(exc).__name__}") from None


def op_types(flatbuffer: bytes) -> list[str]:
    """The operator names of a .tflite model, in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    return [op["op_name"] for op in interpreter._get_ops_details()]  # noqa: SLF001


def run(flatbuffer: bytes, x: Any) -> Any:
    """Run a float .tflite model on one input with the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
