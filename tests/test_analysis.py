"""The FLOPs proxy against hand-computed figures on tiny models."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from models_keras.analysis import UnsupportedLayerError, analyze_model


def _tiny() -> keras.Model:
    inp = keras.Input((8, 8, 4), name="input")
    x = layers.Conv2D(6, 3, padding="same", groups=2, use_bias=False, name="gconv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw")(x)
    x = layers.SeparableConv2D(5, 3, padding="same", name="sep")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(3, name="fc")(x)
    return keras.Model(inp, x)


def test_macs_per_layer_by_hand() -> None:
    cost = {c.name: c for c in analyze_model(_tiny()).layers}
    assert cost["gconv"].macs == 8 * 8 * 3 * 3 * (4 // 2) * 6  # grouped: Cin/groups
    assert cost["dw"].macs == 4 * 4 * 3 * 3 * 6
    assert cost["sep"].macs == 4 * 4 * 6 * 3 * 3 + 4 * 4 * 6 * 5
    assert cost["fc"].macs == 5 * 3
    for name in ("bn", "relu", "gap", "input"):
        assert cost[name].macs == 0


def test_elementwise_column_is_separate() -> None:
    cost = {c.name: c for c in analyze_model(_tiny()).layers}
    assert cost["bn"].elementwise == 8 * 8 * 6
    assert cost["relu"].elementwise == 8 * 8 * 6
    assert cost["gap"].elementwise == 4 * 4 * 5
    assert cost["gconv"].elementwise == 0


def test_params_and_memory_access() -> None:
    model = _tiny()
    total = analyze_model(model)
    assert total.params == model.count_params()
    assert total.trainable_params == sum(int(w.numpy().size) for w in model.trainable_weights)
    assert total.params - total.trainable_params == 12  # BN moving mean + variance
    conv = next(c for c in total.layers if c.name == "gconv")
    assert conv.params == 3 * 3 * 2 * 6
    assert conv.memory_access_bytes(4) == (8 * 8 * 4 + 8 * 8 * 6 + 108) * 4
    assert conv.memory_access_bytes(1) == 8 * 8 * 4 + 8 * 8 * 6 + 108
    assert total.macs == 6912 + 864 + 1344 + 15
    assert next(c for c in total.layers if c.name == "input").memory_access_bytes(4) == 0


def test_peak_activation_chain() -> None:
    # largest pair of live maps: bn's input and output, 8*8*6 each
    assert analyze_model(_tiny()).peak_activation_elems == 2 * 8 * 8 * 6


def test_peak_activation_keeps_a_skip_alive() -> None:
    inp = keras.Input((4, 4, 2), name="input")
    a = layers.ReLU(name="a")(inp)
    b = layers.ReLU(name="b")(a)
    out = layers.Add(name="add")([inp, b])
    cost = analyze_model(keras.Model(inp, out))
    assert cost.peak_activation_elems == 3 * 32  # input held for the add
    assert next(c for c in cost.layers if c.name == "add").elementwise == 32


class Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_unsupported_layer_is_named() -> None:
    inp = keras.Input((4, 4, 2))
    model = keras.Model(inp, Doubler(name="weird")(inp))
    with pytest.raises(UnsupportedLayerError, match=r"unsupported layer type Doubler \(layer 'weird'\)"):
        analyze_model(model)


def test_unknown_layer_is_listed_when_not_strict() -> None:
    inp = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 1, use_bias=False, name="conv")(Doubler(name="weird")(inp))
    cost = analyze_model(keras.Model(inp, x), strict=False)
    assert cost.unknown == (("Doubler", 1),) and cost.macs == 4 * 4 * 2 * 3


def test_nested_models_are_counted_with_their_layers() -> None:
    """A nested functional model and a Sequential (keras.applications' ConvNeXt stem)
    contribute their own layers, named ``outer/inner``."""
    inner_in = keras.Input((4, 4, 2))
    inner = keras.Model(inner_in, layers.Conv2D(3, 1, name="c")(inner_in), name="inner")
    seq = keras.Sequential([layers.Conv2D(5, 1, name="s")], name="seq")
    inp = keras.Input((4, 4, 2))
    cost = analyze_model(keras.Model(inp, seq(inner(inp))))
    assert [c.kind for c in cost.layers] == ["InputLayer", "Conv2D", "Conv2D"]
    assert [c.name for c in cost.layers][1:] == ["inner/c", "seq/s"]
    assert cost.macs == 16 * 2 * 3 + 16 * 3 * 5
    assert cost.params == (2 * 3 + 3) + (3 * 5 + 5)


def test_keras_ops_between_layers_are_counted() -> None:
    """keras.applications' MobileNet V3 computes hard-sigmoid as ``x + 3`` (a Keras op,
    not a layer): its MACs are Keras' own table's 217M for the large model."""
    model = keras.applications.MobileNetV3Large(weights=None, input_shape=(224, 224, 3))
    cost = analyze_model(model)
    assert {"Add", "Multiply"} <= {c.kind for c in cost.layers}
    assert abs(cost.macs / 217e6 - 1) < 0.01 and cost.params == model.count_params()


def test_dynamic_input_needs_a_shape() -> None:
    from mobilectl.core.errors import UserError
    from models_keras.analysis import with_input_shape

    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, layers.Conv2D(4, 3, name="c")(inp))
    with pytest.raises(UserError, match="unknown dimensions; give a fixed input shape"):
        analyze_model(model)
    assert analyze_model(with_input_shape(model, (1, 10, 10, 3))).macs == 8 * 8 * 4 * 27


def test_keras_applications_nasnet_mobile_is_counted() -> None:
    """A user's model with Cropping2D/ZeroPadding2D, whose layer list is not in execution
    order, is counted: NASNet-A Mobile's MACs within 1% of the paper's 564M (Zoph et al.
    2018), its params Keras' own count."""
    model = keras.applications.NASNetMobile(weights=None)
    cost = analyze_model(model)
    assert abs(cost.macs / 564e6 - 1) < 0.01 and cost.params == 5_326_716 == model.count_params()
