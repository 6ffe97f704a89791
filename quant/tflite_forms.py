"""TFLite graphs LiteRT's fast kernels run: the same functions, written in ops XNNPACK
takes, applied to the Keras model just before TF's converter (so export and
sensitivity convert the same graph).

Every precision: a grouped convolution computed group by group (``GroupConv2D``,
which tf2onnx needs) becomes one grouped ``tf.nn.convolution``: the converter writes one
grouped ``CONV_2D`` that XNNPACK runs and folds the batch norm after it into it, where
split/conv/concat left the bn as ``MUL`` and ``ADD`` ops whose per-channel int8
constants XNNPACK does not take (ShuffleNet V1 at 224 px, int8: 3.5 ms of 6.1 ms in
16 such ``ADD``s run by LiteRT's builtin kernel).

Int8 only. Measured on this machine with ``mobilectl profile --per-layer`` (each op timed alone,
LiteRT 2.3): XNNPACK does not take int8 ``HARD_SWISH`` or ``PRELU``, and LiteRT's
builtin kernels for them are about ten times slower than the XNNPACK ops that compute
the same function (a 56x56x96 map: ``HARD_SWISH`` 1.09 ms, ``MUL``/``ADD``/
``MINIMUM``/``MUL`` 0.10 ms; ``PRELU`` 0.99 ms, ``MINIMUM``/``MUL``/``ADD`` 0.09 ms).
So, for full-integer TFLite only, the Keras model is cloned with:

- hard-swish (Howard et al. 2019, MobileNetV3) as ``x * min(relu(x / 6 + 1/2), 1)``,
  the hard-sigmoid gate in [0, 1]: the converter folds ``x * relu6(x + 3) / 6`` back
  into ``HARD_SWISH``, this form it does not; one conv + hard-swish + conv measures
  32.0 dB SQNR against float this way, 32.5 dB with ``HARD_SWISH`` (``(x / 6) *
  relu6(x + 3)``, 26.4 dB, rounds twice more);
- PReLU (He et al. 2015; ESPNet's activation) as ``x + (alpha - 1) * min(x, 0)``
  (32.5 dB against 32.9 dB with ``PRELU``).

Layer names and weights are kept, so ``--keep-float``, sensitivity and per-layer
latency still name the Keras layers. Float exports keep hard-swish and PReLU (XNNPACK
runs float ``HARD_SWISH`` and ``PRELU`` as one op each).
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _layers() -> dict[str, Any]:
    import keras  # heavy: only when a model is converted

    class HardSwishInt8(keras.layers.Layer):
        """hard-swish as ``x * min(relu(x / 6 + 1/2), 1)``."""

        def call(self, x):
            gate = keras.ops.minimum(keras.ops.relu(x * (1.0 / 6.0) + 0.5), 1.0)
            return x * gate

    class PReLUInt8(keras.layers.Layer):
        """PReLU as ``x + (alpha - 1) * min(x, 0)``, alpha shaped as Keras' PReLU's."""

        def __init__(self, alpha_shape: tuple[int, ...], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.alpha_shape = tuple(alpha_shape)

        def build(self, input_shape: Any) -> None:
            self.alpha = self.add_weight(shape=self.alpha_shape, name="alpha")

        def call(self, x):
            return x + keras.ops.minimum(x, 0.0) * (self.alpha - 1.0)

    class GroupedConv2D(keras.layers.Conv2D):
        """``Conv2D(groups)`` traced as TensorFlow's own grouped conv. (Keras compiles
        grouped convs with XLA on CPU, and the ops of that compiled function lose the
        layer's name scope in the converted file.) Never run, only converted."""

        def convolution_op(self, inputs, kernel):
            import tensorflow as tf  # heavy: only when a model is converted

            return tf.nn.convolution(inputs, kernel, strides=list(self.strides),
                                     padding=self.padding.upper(),
                                     dilations=list(self.dilation_rate))

    return {"hard_swish": HardSwishInt8, "prelu": PReLUInt8, "grouped_conv": GroupedConv2D}


def _replacement(layer: Any, *, int8: bool) -> Any | None:
    """The fast twin of ``layer`` (same name and weights), or None to keep it."""
    import keras  # heavy: only when a model is converted

    forms = _layers()
    if (isinstance(layer, keras.layers.Conv2D) and type(layer) is not keras.layers.Conv2D
            and layer.groups > 1):
        return forms["grouped_conv"].from_config(layer.get_config())
    if not int8:
        return None
    if isinstance(layer, keras.layers.Activation) and layer.get_config().get(
            "activation") in ("hard_swish", "hard_silu"):
        return forms["hard_swish"](name=layer.name)
    if isinstance(layer, keras.layers.PReLU):
        return forms["prelu"](tuple(layer.alpha.shape), name=layer.name)
    return None


def for_tflite(model: Any, *, int8: bool) -> Any:
    """``model`` written for LiteRT's fast kernels (the model itself when nothing
    changes): grouped convs as ``Conv2D(groups)``; with ``int8``, hard-swish and PReLU
    in ops XNNPACK runs in int8."""
    import keras  # heavy: only when a model is converted

    if not any(_replacement(layer, int8=int8) is not None for layer in model.layers):
        return model

    def clone(layer: Any) -> Any:
        twin = _replacement(layer, int8=int8)
        return twin if twin is not None else layer.__class__.from_config(layer.get_config())

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
