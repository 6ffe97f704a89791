"""The FLOPs proxy: MACs, element-wise work, params and memory traffic of a Keras model.

MACs are counted as the papers count them: the multiply-accumulates of convolutions
(grouped, depthwise, separable) and dense layers, one per weight use. Element-wise work
(batch norm, activations, adds, multiplies, pooling) goes in its own column. Memory
access cost follows ShuffleNet V2 (Ma et al. 2018, arXiv:1807.11164, Sec. 2): the
input and output feature maps plus the weights each layer touches. Sizes are for a
batch of one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from mobilectl.core.errors import UserError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerCost:
    """The cost of one layer; ``*_elems`` count tensor elements, not bytes."""

    name: str
    kind: str
    output_shape: Shape
    macs: int
    elementwise: int
    params: int
    trainable_params: int
    input_elems: int
    output_elems: int

    def memory_access_bytes(self, element_bytes: int) -> int:
        """Bytes read and written: input + output feature maps + weights.

        The model input is data the caller provides, not traffic of a layer: zero.
        """
        if self.kind == "InputLayer":
            return 0
        return (self.input_elems + self.output_elems + self.params) * element_bytes


@dataclass(frozen=True)
class ModelCost:
    """Per-layer costs and whole-model totals."""

    name: str
    layers: tuple[LayerCost, ...]
    params: int
    trainable_params: int
    peak_activation_elems: int

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def elementwise(self) -> int:
        return sum(layer.elementwise for layer in self.layers)

    def memory_access_bytes(self, element_bytes: int) -> int:
        return sum(layer.memory_access_bytes(element_bytes) for layer in self.layers)


class UnsupportedLayerError(UserError):
    """A layer type whose cost the proxy does not know: never counted as zero."""


def _prod(shape: Shape) -> int:
    return math.prod(d for d in shape if d is not None) if shape else 0


def _conv_macs(layer: layers.Conv2D, ins: list[Shape], out: Shape) -> int:
    kh, kw = layer.kernel_size
    cin = ins[0][-1]
    return _prod(out) * kh * kw * cin // layer.groups


def _depthwise_macs(layer: layers.DepthwiseConv2D, ins: list[Shape], out: Shape) -> int:
    kh, kw = layer.kernel_size
    return _prod(out) * kh * kw


def _separable_macs(layer: layers.SeparableConv2D, ins: list[Shape], out: Shape) -> int:
    kh, kw = layer.kernel_size
    cin = ins[0][-1]
    spatial = _prod(out[:-1])
    depthwise_out = spatial * cin * layer.depth_multiplier
    return depthwise_out * kh * kw + depthwise_out * out[-1]


def _dense_macs(layer: layers.Dense, ins: list[Shape], out: Shape) -> int:
    return _prod(ins[0]) * layer.units


def _pool_ops(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return _prod(out) * math.prod(layer.pool_size)


def _reduce_ops(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return _prod(ins[0])


def _merge_ops(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return _prod(out) * (len(ins) - 1)


def _per_output(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return _prod(out)


def _free(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return 0


# layer class -> (MACs rule, element-wise rule); looked up along the class's MRO.
Rule = Callable[[layers.Layer, list[Shape], Shape], int]
RULES: dict[type, tuple[Rule, Rule]] = {
    layers.SeparableConv2D: (_separable_macs, _free),
    layers.DepthwiseConv2D: (_depthwise_macs, _free),
    layers.Conv2D: (_conv_macs, _free),
    layers.Dense: (_dense_macs, _free),
    layers.BatchNormalization: (_free, _per_output),
    layers.Activation: (_free, _per_output),
    layers.ReLU: (_free, _per_output),
    layers.LeakyReLU: (_free, _per_output),
    layers.PReLU: (_free, _per_output),
    layers.Softmax: (_free, _per_output),
    layers.Rescaling: (_free, _per_output),
    layers.Normalization: (_free, _per_output),  # (x - mean) / sqrt(var): element-wise
    layers.Add: (_free, _merge_ops),
    layers.Multiply: (_free, _merge_ops),
    layers.Subtract: (_free, _merge_ops),
    layers.AveragePooling2D: (_free, _pool_ops),
    layers.MaxPooling2D: (_free, _pool_ops),
    layers.GlobalAveragePooling2D: (_free, _reduce_ops),
    layers.GlobalMaxPooling2D: (_free, _reduce_ops),
    layers.Concatenate: (_free, _free),
    layers.Dropout: (_free, _free),
    layers.Reshape: (_free, _free),
    layers.Flatten: (_free, _free),
    layers.Permute: (_free, _free),
    layers.ZeroPadding2D: (_free, _free),
    layers.Cropping2D: (_free, _free),
    layers.UpSampling2D: (_free, _free),
    layers.Identity: (_free, _free),
    layers.InputLayer: (_free, _free),
}


def register_cost_rule(cls: type, *, macs: Rule = _free, elementwise: Rule = _free) -> None:
    """Teach the proxy a custom layer class (the zoo's own layers use this)."""
    RULES[cls] = (macs, elementwise)


def _rules_for(layer: keras.Operation) -> tuple[Rule, Rule]:
    for cls in type(layer).__mro__:
        if cls in RULES:
            return RULES[cls]
        if cls is layers.Layer:
            break
    raise UnsupportedLayerError(
        f"unsupported layer type {type(layer).__name__} (layer '{layer.name}'): "
        "the FLOPs proxy counts conv, depthwise, separable, dense, normalisation, "
        "activation, merge, pooling and reshape layers"
    )


def _shapes(tensors: object) -> list[Shape]:
    return [tuple(1 if d is None else int(d) for d in t.shape) for t in keras.tree.flatten(tensors)]


def _weight_count(layer: layers.Layer, *, trainable: bool | None = None) -> int:
    weights = layer.weights if trainable is None else (
        layer.trainable_weights if trainable else layer.non_trainable_weights)
    return sum(_prod(tuple(w.shape)) for w in weights)


def _node(layer: layers.Layer):
    nodes = layer._inbound_nodes  # noqa: SLF001 (Keras keeps the call graph here)
    if len(nodes) != 1:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' is called {len(nodes)} times: the FLOPs proxy "
            "needs each layer used once (unshared layers)"
        )
    return nodes[0]


def layer_cost(layer: layers.Layer) -> LayerCost:
    """Cost of one layer of a built functional model."""
    if isinstance(layer, keras.Model):
        raise UnsupportedLayerError(
            f"unsupported layer type {type(layer).__name__} (layer '{layer.name}'): "
            "nested models are not analysed; flatten the model first"
        )
    macs_rule, elementwise_rule = _rules_for(layer)
    node = _node(layer)
    ins = _shapes(node.input_tensors)
    outs = _shapes(node.output_tensors)
    out = outs[0] if outs else ()
    return LayerCost(
        name=layer.name, kind=type(layer).__name__, output_shape=out[1:],
        macs=int(macs_rule(layer, ins, out)),
        elementwise=int(elementwise_rule(layer, ins, out)),
        params=_weight_count(layer), trainable_params=_weight_count(layer, trainable=True),
        input_elems=sum(map(_prod, ins)),
        output_elems=sum(map(_prod, outs)),
    )


def execution_order(model: keras.Model) -> list[layers.Layer]:
    """The model's layers in an order that runs each after its inputs are made
    (Keras' own list is in creation order, which is not always topological, e.g. in
    keras.applications' MobileNet V3); ties keep Keras' order, so zoo models keep theirs."""
    made = {id(t): i for i, layer in enumerate(model.layers)
            for t in keras.tree.flatten(_node(layer).output_tensors)}
    needs = {i: {made[id(t)] for t in keras.tree.flatten(_node(layer).input_tensors)
                 if id(t) in made and made[id(t)] != i}
             for i, layer in enumerate(model.layers)}
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(needs):
        ready = next((i for i in sorted(needs) if i not in done and needs[i] <= done), None)
        if ready is None:
            raise UnsupportedLayerError("the model's graph has a cycle")
        order.append(ready)
        done.add(ready)
    return [model.layers[i] for i in order]


def peak_activation_elems(model: keras.Model) -> int:
    """Largest sum of live feature maps while running the layers in order.

    A tensor lives from the layer that makes it to its last consumer (model outputs
    to the end); no in-place reuse is assumed, so this is an upper bound of what a
    runtime's arena planner needs.
    """
    sizes: dict[int, int] = {}
    last_use: dict[int, int] = {}
    order = execution_order(model)
    for step, layer in enumerate(order):
        node = _node(layer)
        for tensor in keras.tree.flatten(node.input_tensors):
            if id(tensor) not in sizes:
                raise UnsupportedLayerError(
                    f"layer '{layer.name}' runs before its input is made: "
                    "the model's layer order is not topological"
                )
            last_use[id(tensor)] = step
        for tensor in keras.tree.flatten(node.output_tensors):
            sizes[id(tensor)] = _prod(_shapes(tensor)[0])
    for tensor in keras.tree.flatten(model.outputs):
        last_use[id(tensor)] = len(order)
    live: set[int] = set()
    peak = 0
    for step, layer in enumerate(order):
        node = _node(layer)
        live.update(id(t) for t in keras.tree.flatten(node.output_tensors))
        peak = max(peak, sum(sizes[t] for t in live))
        live = {t for t in live if last_use.get(t, step) > step}
    return peak


def analyze_model(model: keras.Model) -> ModelCost:
    """Per-layer and total cost of a functional Keras model (batch of one).

    Raises:
        UnsupportedLayerError: a layer whose cost is not known, named in the message.
    """
    costs = tuple(layer_cost(layer) for layer in execution_order(model))
    trainable = sum(c.trainable_params for c in costs)
    return ModelCost(
        name=model.name, layers=costs, params=sum(c.params for c in costs),
        trainable_params=trainable, peak_activation_elems=peak_activation_elems(model),
    )
