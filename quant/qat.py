"""Quantization-aware training: a Keras model rewritten with fake quantization that
TF's converter reads as quantization parameters (Jacob et al. 2018, "Quantization
and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference").

The rewrite, per layer of a functional model:

- batch norm after a convolution or dense layer is folded into its kernel and bias
  once, with its moving statistics, as the converter folds it; the fold is exact in
  inference, and the folded layer is fine-tuned (Jacob et al.'s frozen statistics);
- every kernel is fake-quantized symmetrically per output channel with
  ``weight_bits`` (8 or 4 over the channel's largest weight; or 2: ternary, {-1, 0, 1}
  times a per-channel level of 1.4 mean absolute weights, the narrow range of two
  bits, after Li et al. 2016, "Ternary Weight Networks", whose threshold is half it);
- every tensor the integer graph keeps gets an activation range: an exponential
  moving average of the batch minimum and maximum, updated in training only, after
  each op the converter does not fuse into its producer (a ReLU after a conv, a conv
  before its folded batch norm, a reshape or a max pool, which keep their input's
  scale, get none); the input gets one too, so no representative dataset is needed.

Layer names are kept; ranges are layers named ``<layer>.range``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError
from quant.pruning import inbound_layers

#: The weight bit widths QAT trains for (2 is ternary).
WEIGHT_BITS = (8, 4, 2)
#: Ternary weights' level, in mean absolute weights of the channel (twice TWN's threshold).
TERNARY_SCALE = 1.4
#: The momentum of an activation range's moving average.
RANGE_MOMENTUM = 0.99
#: Layers whose output keeps its input's scale in the integer graph: no range of their own.
SAME_SCALE = frozenset({"Reshape", "Flatten", "Dropout", "Identity", "MaxPooling2D",
                        "ChannelShuffle", "ChannelSplit", "ZeroPadding2D", "Permute",
                        "GlobalMaxPooling2D", "SpatialDropout2D"})
#: Layers with weights that QAT fake-quantizes; others with weights cannot be trained so.
QUANTIZED = frozenset({"Conv2D", "GroupConv2D", "DepthwiseConv2D",
                       "StridedDilatedDepthwiseConv2D", "Dense"})
#: Layers with weights that stay as they are in the rewrite.
KEPT_WITH_WEIGHTS = frozenset({"BatchNormalization", "PReLU"})
#: Outputs whose int8 range TFLite fixes: [0, 1) in steps of 1/256.
FIXED_UNIT = frozenset({"softmax", "sigmoid"})


def check_weight_bits(bits: int) -> None:
    """``bits`` must be one of :data:`WEIGHT_BITS`."""
    if bits not in WEIGHT_BITS:
        allowed = ", ".join(map(str, WEIGHT_BITS))
        raise UserError(f"--weight-bits {bits} is not allowed: one of {allowed}")


def unsupported_layers(model: Any) -> list[str]:
    """The layers QAT cannot fake-quantize, as ``name (Class)``."""
    bad = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer" or not layer.weights:
            continue
        if kind not in QUANTIZED | KEPT_WITH_WEIGHTS:
            bad.append(f"{layer.name} ({kind})")
        elif getattr(layer, "groups", 1) > 1:
            bad.append(f"{layer.name} ({kind}, {layer.groups} groups)")
    return bad


def weight_quant(kernel: Any, *, bits: int, axis: int | None) -> Any:
    """``kernel`` fake-quantized symmetrically per channel along ``axis`` (None: per
    tensor) in the narrow range: ``2**(bits-1) - 1`` levels each side of zero."""
    import keras  # heavy: only when a model is trained

    ops = keras.ops
    other = None if axis is None else [a for a in range(len(kernel.shape))
                                       if a != axis % len(kernel.shape)]
    size = ops.abs(ops.stop_gradient(kernel))
    # ternary: TWN's threshold 0.7 * mean |w| is half the level (Li et al. 2016)
    bound = ops.max(size, axis=other) if bits > 2 else TERNARY_SCALE * ops.mean(size, axis=other)
    bound = ops.maximum(bound, 1e-8)
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -bound, bound, num_bits=bits, narrow_range=True, axis=axis)


@dataclass(frozen=True)
class Folded:
    """A layer's kernel and bias with the batch norm after it folded in."""

    kernel: np.ndarray
    bias: np.ndarray


def fold_batch_norm(layer: Any, bn: Any) -> Folded:
    """``layer``'s kernel and bias with ``bn``'s inference transform folded in:
    ``scale = gamma / sqrt(var + eps)`` per output channel."""
    weights = layer.get_weights()
    kernel = weights[0]
    channels = kernel.shape[-1] if type(layer).__name__ not in _DEPTHWISE else \
        kernel.shape[-2] * kernel.shape[-1]
    bias = weights[1] if layer.use_bias else np.zeros(channels, np.float32)
    gamma = np.asarray(bn.gamma) if bn.scale else np.ones(channels, np.float32)
    beta = np.asarray(bn.beta) if bn.center else np.zeros(channels, np.float32)
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    shift = beta - np.asarray(bn.moving_mean) * scale
    if type(layer).__name__ in _DEPTHWISE:  # (kh, kw, C, multiplier): channel c*m + j
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale
    return Folded(kernel.astype(np.float32), (bias * scale + shift).astype(np.float32))


_DEPTHWISE = frozenset({"DepthwiseConv2D", "StridedDilatedDepthwiseConv2D"})


@functools.cache
def layer_classes() -> dict[str, Any]:
    """The QAT layers (registered for ``.keras`` files), by the class they replace."""
    import keras  # heavy: only when a model is trained

    ops = keras.ops

    class _Bits:
        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "weight_bits": self.weight_bits}

    @keras.saving.register_keras_serializable(package="mobilectl.qat")
    class QatConv2D(_Bits, keras.layers.Conv2D):
        """A conv whose kernel is fake-quantized per output channel."""

        def __init__(self, *args: Any, weight_bits: int = 8, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.weight_bits = int(weight_bits)

        def convolution_op(self, inputs, kernel):
            # (not the ``kernel`` property: Keras saves that, and would save it quantized)
            kernel = weight_quant(kernel, bits=self.weight_bits, axis=-1)
            return super().convolution_op(inputs, kernel)

    @keras.saving.register_keras_serializable(package="mobilectl.qat")
    class QatDepthwiseConv2D(_Bits, keras.layers.DepthwiseConv2D):
        """A depthwise conv whose kernel is fake-quantized per channel, then every
        ``subsample``-th row and column kept (ESPNetv2's strided dilated conv)."""

        def __init__(self, *args: Any, weight_bits: int = 8, subsample: int = 1,
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.weight_bits = int(weight_bits)
            self.subsample = int(subsample)

        def compute_output_shape(self, input_shape):
            n, h, w, c = super().compute_output_shape(input_shape)
            s = self.subsample
            return (n, None if h is None else -(-h // s), None if w is None else -(-w // s), c)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "subsample": self.subsample}

        def call(self, x):
            kernel = weight_quant(self.kernel, bits=self.weight_bits, axis=-2)
            y = ops.depthwise_conv(x, kernel, strides=self.strides, padding=self.padding,
                                   dilation_rate=self.dilation_rate)
            y = ops.add(y, self.bias) if self.use_bias else y
            y = self.activation(y) if self.activation is not None else y
            s = self.subsample
            return y if s == 1 else y[:, ::s, ::s, :]

    @keras.saving.register_keras_serializable(package="mobilectl.qat")
    class QatDense(_Bits, keras.layers.Dense):
        """A dense layer whose kernel is fake-quantized per tensor (TFLite's
        ``FULLY_CONNECTED`` stores it transposed, and its converter takes no
        per-unit ranges there)."""

        def __init__(self, *args: Any, weight_bits: int = 8, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.weight_bits = int(weight_bits)

        def call(self, x, training=None):
            kernel = weight_quant(self.kernel, bits=self.weight_bits, axis=None)
            y = ops.matmul(x, kernel)
            y = ops.add(y, self.bias) if self.use_bias else y
            return self.activation(y) if self.activation is not None else y

    @keras.saving.register_keras_serializable(package="mobilectl.qat")
    class ActivationRange(keras.layers.Layer):
        """Fake quantization of activations to 8 bits over a moving-average range
        (``fixed``: TFLite's [0, 255/256] of a softmax or logistic output)."""

        def __init__(self, *, fixed: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.fixed = bool(fixed)

        def build(self, input_shape: Any) -> None:
            self.range = _moving_range(self, "")

        def call(self, x, training=None):
            if self.fixed:
                return keras.quantizers.fake_quant_with_min_max_vars(x, 0.0, 255 / 256)
            return _fake_quant(x, self.range, training=training)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "fixed": self.fixed}

    def _moving_range(layer: Any, prefix: str) -> tuple[Any, Any, Any]:
        """A range's low, high and whether it has seen a batch (non-trainable)."""
        make = functools.partial(layer.add_weight, shape=(), trainable=False,
                                 initializer="zeros")
        return make(name=f"{prefix}low"), make(name=f"{prefix}high"), make(name=f"{prefix}seen")

    def _fake_quant(x: Any, moving: tuple[Any, Any, Any], *, training: Any) -> Any:
        """``x`` fake-quantized to 8 bits over its moving range, updated in training
        (the first batch sets it; zero always inside, as integer zero points need)."""
        low_var, high_var, seen = moving
        if training:
            low = ops.minimum(ops.min(ops.stop_gradient(x)), 0.0)
            high = ops.maximum(ops.max(ops.stop_gradient(x)), 0.0)
            keep = RANGE_MOMENTUM * seen
            low_var.assign(keep * low_var + (1 - keep) * low)
            high_var.assign(keep * high_var + (1 - keep) * high)
            seen.assign(1.0)
        return keras.quantizers.fake_quant_with_min_max_vars(x, low_var, high_var)

    @keras.saving.register_keras_serializable(package="mobilectl.qat")
    class QatHardSwish(keras.layers.Layer):
        """hard-swish (Howard et al. 2019) as ``x * min(relu(x / 6 + 1/2), 1)``, the
        form whose int8 ops XNNPACK runs (:mod:`quant.tflite_forms`; TFLite's own int8
        ``HARD_SWISH`` runs on a slow builtin kernel), with a range after each step:
        moving ones for ``x / 6`` and the ReLU, [0, 1] for the gate. The layer's output
        range is added after it like any layer's."""

        def build(self, input_shape: Any) -> None:
            self.scaled = _moving_range(self, "scaled.")
            self.shifted = _moving_range(self, "shifted.")

        def call(self, x, training=None):
            scaled = _fake_quant(x * (1.0 / 6.0), self.scaled, training=training)
            shifted = _fake_quant(ops.relu(scaled + 0.5), self.shifted, training=training)
            gate = keras.quantizers.fake_quant_with_min_max_vars(
                ops.minimum(shifted, 1.0), 0.0, 1.0)
            return x * gate

    @keras.saving.register_keras_serializable(package="mobilectl.qat")
    class QatHardSigmoid(keras.layers.Layer):
        """hard-sigmoid as TF writes it, ``relu6(x + 3) / 6``, with the fixed ranges of
        both steps ([0, 6] after the add with its fused ReLU6, [0, 1] after the
        scale): the converter keeps both ops in int8 (Howard et al. 2019's gate)."""

        def call(self, x):
            fq = keras.quantizers.fake_quant_with_min_max_vars
            y = fq(ops.relu6(x + 3.0), 0.0, 6.0)
            return fq(y * (1.0 / 6.0), 0.0, 1.0)

    return {"Conv2D": QatConv2D, "GroupConv2D": QatConv2D,
            "DepthwiseConv2D": QatDepthwiseConv2D,
            "StridedDilatedDepthwiseConv2D": QatDepthwiseConv2D,
            "Dense": QatDense, "range": ActivationRange, "hard_sigmoid": QatHardSigmoid,
            "hard_swish": QatHardSwish}


def weight_bits_of(model: Any) -> int | None:
    """The weight bits ``model`` was rewritten for by :func:`qat_model` (None: it was
    not; it then needs calibrated post-training quantization)."""
    classes = set(layer_classes().values())
    bits = {layer.weight_bits for layer in model.layers if type(layer) in classes
            and hasattr(layer, "weight_bits")}
    return min(bits) if bits else None


#: Activations TFLite fuses into the op before them (a conv, a dense layer, an add).
_FUSED = ("relu", "relu6")
#: Activations whose QAT form carries its own fixed ranges.
SELF_RANGED = frozenset({"hard_sigmoid"})
#: Activations rewritten for QAT, by their Keras names: the form each takes.
REWRITTEN = {"hard_sigmoid": "hard_sigmoid", "hard_swish": "hard_swish",
             "hard_silu": "hard_swish"}
#: Ops an activation fuses into.
_FUSING = QUANTIZED | {"Add"}


def _activation_of(layer: Any) -> str | None:
    """``relu``/``relu6``/``softmax``... for an activation layer or a layer with one."""
    kind, config = type(layer).__name__, layer.get_config()
    if kind == "ReLU":
        plain = not config.get("negative_slope") and not config.get("threshold")
        cap = config.get("max_value")
        return None if not plain else "relu" if cap is None else "relu6" if cap == 6 else None
    if kind == "Softmax":
        return "softmax"
    activation = config.get("activation")
    return activation if isinstance(activation, str) and activation != "linear" else None


@dataclass(frozen=True)
class _Plan:
    """How each layer is rewritten: folded pairs and which outputs get a range."""

    folds: dict[str, str]  # batch norm -> the conv or dense layer it folds into
    ranges: dict[str, bool]  # layer -> whether its range is TFLite's fixed [0, 1)


def _consumers(model: Any) -> dict[str, list[str]]:
    """Each layer's consumers by name, from the functional config."""
    consumers: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    for entry in model.get_config()["layers"]:
        for source in inbound_layers(entry):
            consumers[source].append(entry["name"])
    return consumers


def plan(model: Any) -> _Plan:
    """Which batch norms fold and which layer outputs get an activation range."""
    consumers = _consumers(model)
    by_name = {layer.name: layer for layer in model.layers}
    folds = {}
    for name, outs in consumers.items():
        layer = by_name[name]
        if type(layer).__name__ in QUANTIZED and _activation_of(layer) is None \
                and len(outs) == 1 and type(by_name[outs[0]]).__name__ == "BatchNormalization":
            folds[outs[0]] = name
    ranges = {}
    for name, outs in consumers.items():
        kind = type(by_name[name]).__name__
        if kind == "InputLayer" or kind in SAME_SCALE or name in folds.values():
            continue
        fusing = kind in _FUSING or name in folds
        if fusing and outs and all(_activation_of(by_name[o]) in _FUSED
                                   and type(by_name[o]).__name__ not in QUANTIZED for o in outs):
            continue
        if _activation_of(by_name[name]) in SELF_RANGED:
            continue
        ranges[name] = _activation_of(by_name[name]) in FIXED_UNIT
    return _Plan(folds, ranges)


def qat_model(model: Any, *, weight_bits: int) -> Any:
    """``model`` rewritten for quantization-aware training (see the module docstring):
    the same layer names, batch norms folded, the trained weights kept."""
    import keras  # heavy: only when a model is trained

    check_weight_bits(weight_bits)
    bad = unsupported_layers(model)
    if bad:
        more = f", and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise UserError(f"qat: cannot fake-quantize {len(bad)} layer(s): {', '.join(bad[:3])}"
                        f"{more}; QAT takes Conv2D (ungrouped), DepthwiseConv2D, Dense, "
                        "BatchNormalization and PReLU layers")
    chosen = plan(model)
    weights = _rewritten_weights(model, chosen)
    classes = layer_classes()
    inputs = keras.Input(batch_shape=model.input.shape, name="input")
    quantized_input = classes["range"](name="input.range")(inputs)

    def clone(layer: Any) -> Any:
        return _clone(layer, chosen, weight_bits)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        args = keras.tree.map_structure(lambda t: quantized_input if t is inputs else t, args)
        y = layer(args[0]) if layer.name in chosen.folds else layer(*args, **kwargs)
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
        if layer.name in chosen.ranges:
            y = classes["range"](fixed=chosen.ranges[layer.name], name=f"{layer.name}.range")(y)
        return y

    rewritten = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone,
                                         call_function=call)
    for layer in rewritten.layers:  # a batch norm no conv absorbs: frozen, as converted
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return rewritten


def _clone(layer: Any, chosen: _Plan, weight_bits: int) -> Any:
    """The QAT twin of one layer: a fake-quantized conv or dense layer, an identity
    for a folded batch norm, otherwise a copy."""
    import keras  # heavy: only when a model is trained

    kind, config = type(layer).__name__, layer.get_config()
    if layer.name in chosen.folds:
        return keras.layers.Identity(name=layer.name)
    if kind == "Activation" and _activation_of(layer) in REWRITTEN:
        return layer_classes()[REWRITTEN[_activation_of(layer)]](name=layer.name)
    if kind in QUANTIZED:
        if layer.name in chosen.folds.values():
            config["use_bias"] = True
        return layer_classes()[kind].from_config({**config, "weight_bits": weight_bits})
    return layer.__class__.from_config(config)


def _rewritten_weights(model: Any, chosen: _Plan) -> dict[str, list[np.ndarray]]:
    """The weights of each rewritten layer: folded where a batch norm folds in."""
    by_name = {layer.name: layer for layer in model.layers}
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    for bn, layer in chosen.folds.items():
        folded = fold_batch_norm(by_name[layer], by_name[bn])
        weights[layer] = [folded.kernel, folded.bias]
        del weights[bn]
    return weights


def calibrate_ranges(model: Any, x: np.ndarray, *, batch_size: int = 64) -> None:
    """Set every activation range from ``x`` before training (a forward pass per batch
    in training mode: the ranges' moving averages start at the first batch)."""
    for start in range(0, len(x), batch_size):
        model(x[start:start + batch_size], training=True)
