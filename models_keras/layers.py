"""The zoo's own layers: channel split, channel shuffle and a portable grouped conv.

All are registered as Keras serializables, so saved models load with
``safe_mode=True``, and all lower to builtin TFLite and ONNX ops (split, reshape,
transpose, conv, concat): never to Flex ops or a nested function call.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from models_keras.analysis import register_cost_rule


@keras.saving.register_keras_serializable(package="mobilectl")
class ChannelSplit(layers.Layer):
    """Split the channel axis into parts of the given sizes (ShuffleNet V2, MixNet)."""

    def __init__(self, sizes: tuple[int, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sizes = tuple(int(s) for s in sizes)

    def call(self, x):
        bounds = [sum(self.sizes[: i + 1]) for i in range(len(self.sizes) - 1)]
        return ops.split(x, bounds, axis=-1)

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[:-1]) + (s,) for s in self.sizes]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sizes": list(self.sizes)}


@keras.saving.register_keras_serializable(package="mobilectl")
class ChannelShuffle(layers.Layer):
    """Channel shuffle of ShuffleNet (Zhang et al. 2017): reshape to (g, c/g), transpose,
    flatten back. Shapes are static, so it lowers to one RESHAPE, TRANSPOSE, RESHAPE."""

    def __init__(self, groups: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.groups = int(groups)

    def call(self, x):
        _, h, w, c = x.shape
        x = ops.reshape(x, (-1, h, w, self.groups, c // self.groups))
        x = ops.transpose(x, (0, 1, 2, 4, 3))
        return ops.reshape(x, (-1, h, w, c))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="mobilectl")
class GroupConv2D(layers.Conv2D):
    """A grouped convolution computed group by group.

    Same weights (and MACs, params) as ``Conv2D(groups=g)``, but Keras 3 runs grouped
    convs on CPU through an XLA-compiled function that tf2onnx cannot convert; split,
    per-group conv and concat convert everywhere.
    """

    def call(self, x):
        if self.groups == 1:
            return super().call(x)
        xs = ops.split(x, self.groups, axis=-1)
        ks = ops.split(self.kernel, self.groups, axis=-1)
        ys = [ops.conv(xi, ki, strides=self.strides, padding=self.padding,
                       dilation_rate=self.dilation_rate) for xi, ki in zip(xs, ks)]
        y = ops.concatenate(ys, axis=-1)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y


register_cost_rule(ChannelSplit)
register_cost_rule(ChannelShuffle)


@keras.saving.register_keras_serializable(package="mobilectl")
class StridedDilatedDepthwiseConv2D(layers.DepthwiseConv2D):
    """A dilated depthwise conv followed by subsampling: the strided dilated depthwise
    conv of ESPNetv2's down-sampling EESP unit (Mehta et al. 2019).

    TensorFlow has no depthwise conv that is both strided and dilated, so this computes
    it at stride 1 (``padding='same'``, windows centred on each pixel, as the reference
    pads) and keeps every ``subsample``-th row and column: STRIDED_SLICE in TFLite,
    Slice in ONNX. MACs are counted on the kept outputs, as the paper counts them.
    """

    def __init__(self, *args: Any, subsample: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subsample = int(subsample)

    def call(self, x):
        y = super().call(x)
        s = self.subsample
        return y[:, ::s, ::s, :]

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        s = self.subsample
        return (n, None if h is None else -(-h // s), None if w is None else -(-w // s), c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "subsample": self.subsample}
