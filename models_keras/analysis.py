"""The FLOPs proxy of a Keras model: MACs, element-wise work, params and memory
traffic per layer (the counting rules are in :mod:`mobilectl.core.cost`).

Layers and the Keras ops a functional model holds besides its layers (``x + 3`` in
keras.applications' MobileNet V3 is an ``Add`` operation, not a layer) are both counted,
in execution order. Sizes are for a batch of one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import keras
from keras import layers

from mobilectl.core.cost import LayerCost, ModelCost, Shape, Step, peak_live_elems, prod
from mobilectl.core.errors import UserError

__all__ = ["LayerCost", "ModelCost", "UnsupportedLayerError", "analyze_model",
           "register_cost_rule"]


class UnsupportedLayerError(UserError):
    """A layer type whose cost the proxy does not know: never counted as zero."""


def _conv_macs(layer: layers.Conv2D, ins: list[Shape], out: Shape) -> int:
    kh, kw = layer.kernel_size
    cin = ins[0][-1]
    return prod(out) * kh * kw * cin // layer.groups


def _depthwise_macs(layer: layers.DepthwiseConv2D, ins: list[Shape], out: Shape) -> int:
    kh, kw = layer.kernel_size
    return prod(out) * kh * kw


def _separable_macs(layer: layers.SeparableConv2D, ins: list[Shape], out: Shape) -> int:
    kh, kw = layer.kernel_size
    cin = ins[0][-1]
    spatial = prod(out[:-1])
    depthwise_out = spatial * cin * layer.depth_multiplier
    return depthwise_out * kh * kw + depthwise_out * out[-1]


def _dense_macs(layer: layers.Dense, ins: list[Shape], out: Shape) -> int:
    return prod(ins[0]) * layer.units


def _pool_ops(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return prod(out) * math.prod(layer.pool_size)


def _reduce_ops(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return prod(ins[0])


def _merge_ops(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return prod(out) * (len(ins) - 1)


def _per_output(layer: layers.Layer, ins: list[Shape], out: Shape) -> int:
    return prod(out)


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
    layers.LayerNormalization: (_free, _per_output),
    layers.GroupNormalization: (_free, _per_output),
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


#: Keras ops (not layers) a functional model may hold: element-wise arithmetic and
#: reshaping, looked up by class name (they live in keras' private ``ops`` modules).
OP_RULES: dict[str, tuple[Rule, Rule]] = {
    **{name: (_free, _merge_ops) for name in (
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum")},
    **{name: (_free, _per_output) for name in (
        "Relu", "Relu6", "Sigmoid", "HardSigmoid", "HardSwish", "Silu", "Swish", "Tanh",
        "Negative", "Abs", "Square", "Sqrt", "Exp", "Clip", "Softmax")},
    **{name: (_free, _free) for name in (
        "Reshape", "Transpose", "Squeeze", "ExpandDims", "Concatenate", "Cast", "Identity")},
}


class _Unknown(Exception):
    """No rule for this operation (collected, or raised as UnsupportedLayerError)."""


def _rules_for(layer: keras.Operation) -> tuple[Rule, Rule]:
    if not isinstance(layer, layers.Layer):
        if type(layer).__name__ in OP_RULES:
            return OP_RULES[type(layer).__name__]
        raise _Unknown
    for cls in type(layer).__mro__:
        if cls in RULES:
            return RULES[cls]
        if cls is layers.Layer:
            break
    raise _Unknown


def _unsupported(layer: keras.Operation) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"unsupported layer type {type(layer).__name__} (layer '{layer.name}'): "
        "the FLOPs proxy counts conv, depthwise, separable, dense, normalisation, "
        "activation, merge, pooling and reshape layers"
    )


def _shapes(tensors: object) -> list[Shape]:
    return [tuple(1 if d is None else int(d) for d in t.shape) for t in keras.tree.flatten(tensors)]


def _weight_count(layer: keras.Operation, *, trainable: bool | None = None) -> int:
    if not isinstance(layer, layers.Layer):
        return 0
    weights = layer.weights if trainable is None else (
        layer.trainable_weights if trainable else layer.non_trainable_weights)
    return sum(prod(tuple(w.shape)) for w in weights)


def _graph_nodes(model: keras.Model) -> set[int]:
    """The call nodes of ``model``'s own graph (a layer of a nested model also has a
    node in the graph that calls it)."""
    graph = getattr(model, "_functional", None) or model  # a Sequential wraps a graph
    by_depth = getattr(graph, "_nodes_by_depth", {})  # noqa: SLF001 (Keras' call graph)
    return {id(node) for nodes in by_depth.values() for node in nodes}


def _node(layer: keras.Operation, graph: set[int] | None = None):
    nodes = layer._inbound_nodes  # noqa: SLF001 (Keras keeps the call graph here)
    if graph:
        nodes = [n for n in nodes if id(n) in graph] or nodes
    if len(nodes) != 1:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' is called {len(nodes)} times: the FLOPs proxy "
            "needs each layer used once (unshared layers)"
        )
    return nodes[0]


def layer_cost(layer: keras.Operation, *, strict: bool = True, node: Any = None) -> LayerCost:
    """Cost of one layer (or Keras op) of a built functional model (``node``: its call
    in the model, found when not given); an unknown type raises when ``strict``, else
    gives a row marked ``known=False``."""
    try:
        macs_rule, elementwise_rule = _rules_for(layer)
        known = True
    except _Unknown:
        if strict:
            raise _unsupported(layer) from None
        macs_rule, elementwise_rule, known = _free, _free, False
    node = node or _node(layer)
    ins = _shapes(node.input_tensors)
    outs = _shapes(node.output_tensors)
    out = outs[0] if outs else ()
    return LayerCost(
        name=layer.name, kind=type(layer).__name__, output_shape=out[1:],
        macs=int(macs_rule(layer, ins, out)),
        elementwise=int(elementwise_rule(layer, ins, out)),
        params=_weight_count(layer), trainable_params=_weight_count(layer, trainable=True),
        input_elems=sum(map(prod, ins)), output_elems=sum(map(prod, outs)), known=known,
    )


def execution_order(model: keras.Model) -> list[keras.Operation]:
    """The model's layers and ops in an order that runs each after its inputs are made
    (Keras' own list is in creation order, which is not always topological, e.g. in
    keras.applications' MobileNet V3); ties keep Keras' order, so zoo models keep theirs."""
    graph = getattr(model, "_functional", None) or model
    ops = list(graph.operations)
    nodes = _graph_nodes(model)
    made = {id(t): i for i, op in enumerate(ops)
            for t in keras.tree.flatten(_node(op, nodes).output_tensors)}
    needs = {i: {made[id(t)] for t in keras.tree.flatten(_node(op, nodes).input_tensors)
                 if id(t) in made and made[id(t)] != i}
             for i, op in enumerate(ops)}
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(needs):
        ready = next((i for i in sorted(needs) if i not in done and needs[i] <= done), None)
        if ready is None:
            raise UnsupportedLayerError("the model's graph has a cycle")
        order.append(ready)
        done.add(ready)
    return [ops[i] for i in order]


def _walk(model: keras.Model) -> list[tuple[keras.Operation, Any]]:
    """The model's ops in execution order, each with its call node in this graph."""
    nodes = _graph_nodes(model)
    return [(op, _node(op, nodes)) for op in execution_order(model)]


def peak_activation_elems(model: keras.Model,
                          walk: list[tuple[keras.Operation, Any]] | None = None) -> int:
    """Largest sum of live feature maps while running the layers in order (an upper
    bound: no in-place reuse; see :func:`mobilectl.core.cost.peak_live_elems`);
    ``walk`` is :func:`_walk`'s result when the caller has it already."""
    steps, sizes = [], {}
    for _, node in walk or _walk(model):
        writes = tuple(id(t) for t in keras.tree.flatten(node.output_tensors))
        steps.append(Step(tuple(id(t) for t in keras.tree.flatten(node.input_tensors)), writes))
        for tensor in keras.tree.flatten(node.output_tensors):
            sizes[id(tensor)] = prod(_shapes(tensor)[0])
    return peak_live_elems(steps, sizes, [id(t) for t in keras.tree.flatten(model.outputs)])


def _costs(walk: list[tuple[keras.Operation, Any]], *, strict: bool,
           prefix: str) -> list[LayerCost]:
    """Rows in execution order; a nested model (called once) contributes its own
    layers, named ``outer/inner``, and its input layer is skipped."""
    rows: list[LayerCost] = []
    for op, node in walk:
        if isinstance(op, keras.Model):
            inner = _costs(_walk(op), strict=strict, prefix=f"{prefix}{op.name}/")
            rows.extend(r for r in inner if r.kind != "InputLayer")
        else:
            row = layer_cost(op, strict=strict, node=node)
            rows.append(replace(row, name=prefix + row.name) if prefix else row)
    return rows


def _check_static(model: keras.Model) -> None:
    shapes = [tuple(t.shape) for t in keras.tree.flatten(model.inputs)]
    if any(d is None for shape in shapes for d in shape[1:]):
        raise UserError(f"{model.name}: input shape {shapes[0]} has unknown dimensions; "
                        "give a fixed input shape (--input-shape, e.g. 1,224,224,3)")


def with_input_shape(model: keras.Model, shape: tuple[int, ...]) -> keras.Model:
    """The same functional graph rebuilt on a fixed ``shape`` (batch first) input, for
    counting a model saved with dynamic dimensions (weights are not copied)."""
    inputs = keras.Input(batch_shape=(None, *shape[1:]), name="input")
    try:
        return keras.models.clone_model(model, input_tensors=inputs)
    except Exception as exc:  # keras raises ValueError/TypeError for shapes that do not fit
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"input shape {shape} does not fit {model.name}: {first}") from None


def analyze_model(model: keras.Model, *, strict: bool = True) -> ModelCost:
    """Per-layer and total cost of a functional Keras model (batch of one).

    Args:
        strict: raise on a layer type the proxy does not know; when False, list it
            in :attr:`ModelCost.unknown` instead (the totals are then lower bounds).

    Raises:
        UnsupportedLayerError: an unknown layer (``strict``), named in the message.
    """
    _check_static(model)
    walk = _walk(model)
    costs = tuple(_costs(walk, strict=strict, prefix=""))
    return ModelCost(
        name=model.name, layers=costs, params=sum(c.params for c in costs),
        trainable_params=sum(c.trainable_params for c in costs),
        peak_activation_elems=peak_activation_elems(model, walk),
        input_shape=tuple(int(d) for d in keras.tree.flatten(model.inputs)[0].shape[1:]),
    )
