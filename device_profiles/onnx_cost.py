"""The FLOPs proxy of an .onnx file, read from its graph after ONNX shape inference.
MACs follow the Keras proxy's rules (:mod:`mobilectl.core.cost`): ``Conv`` counts
``output elements x kernel area x input channels per group``, ``MatMul``/``Gemm``
``output elements x inner size``; quantized graphs (QDQ, ``ConvInteger``,
``MatMulInteger``, ``QLinearConv``) count the same way. A graph input with a dynamic
dimension needs a fixed ``input_shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mobilectl.core.cost import LayerCost, ModelCost, Shape, Step, peak_live_elems, prod
from device_profiles.layer_map import FileOp
from mobilectl.core.errors import UserError, first_line

#: TensorProto data type -> (name, bits) for the weight bytes by dtype.
DTYPES = {1: ("float32", 32), 2: ("uint8", 8), 3: ("int8", 8), 5: ("int16", 16),
          6: ("int32", 32), 7: ("int64", 64), 10: ("float16", 16), 11: ("float64", 64),
          22: ("int4", 4), 21: ("uint4", 4)}

Rule = Callable[[Any, list[Shape], Shape], int]


def _conv_weight(node: Any) -> int:
    return 3 if node.op_type == "QLinearConv" else 1


def _conv(node: Any, ins: list[Shape], out: Shape) -> int:
    weight = ins[_conv_weight(node)]  # [O, I/groups, kh, kw]
    return prod(out) * prod(weight[1:])


def _matmul(node: Any, ins: list[Shape], out: Shape) -> int:
    trans_a = any(a.name == "transA" and a.i for a in node.attribute)
    a = ins[0]
    return prod(out) * (a[0] if trans_a and node.op_type == "Gemm" else a[-1])


def _per_output(node: Any, ins: list[Shape], out: Shape) -> int:
    return prod(out)


def _merge(node: Any, ins: list[Shape], out: Shape) -> int:
    return prod(out) * max(1, len(ins) - 1)


def _pool(node: Any, ins: list[Shape], out: Shape) -> int:
    kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
    return prod(out) * prod(kernel)


def _reduce(node: Any, ins: list[Shape], out: Shape) -> int:
    return prod(ins[0])


def _free(node: Any, ins: list[Shape], out: Shape) -> int:
    return 0


#: op type -> (MACs rule, element-wise rule)
RULES: dict[str, tuple[Rule, Rule]] = {
    **{k: (_conv, _free) for k in ("Conv", "ConvInteger", "QLinearConv")},
    **{k: (_matmul, _free) for k in ("MatMul", "Gemm", "MatMulInteger")},
    **{k: (_free, _merge) for k in ("Add", "Mul", "Sub", "Div", "Max", "Min", "Sum")},
    **{k: (_free, _per_output) for k in (
        "Relu", "Clip", "LeakyRelu", "PRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh",
        "Softmax", "Neg", "Exp", "Sqrt", "Reciprocal", "Erf", "Pow", "BatchNormalization",
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "Elu",
        "Gelu")},
    **{k: (_free, _pool) for k in ("MaxPool", "AveragePool")},
    **{k: (_free, _reduce) for k in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean",
                                     "ReduceSum", "ReduceMax")},
    **{k: (_free, _free) for k in (
        "Reshape", "Transpose", "Concat", "Split", "Slice", "Pad", "Squeeze", "Unsqueeze",
        "Flatten", "Identity", "Shape", "Gather", "Constant", "Expand", "Tile",
        "DepthToSpace", "SpaceToDepth", "Resize")},
}


def graph_inputs(proto: Any) -> list[Any]:
    """The graph's inputs that are not initializers (the data a caller feeds)."""
    constants = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in constants]


def graph_dims(value: Any) -> list[int | None]:
    """A value's dimensions, ``None`` where dynamic (a ``dim_param`` or no size)."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value.type.tensor_type.shape.dim]


def dims_text(dims: Sequence[int | None]) -> str:
    """``(?, 224, 224, 3)``: dimensions as messages show them, ``?`` where dynamic."""
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def fix_input_shape(proto: Any, shape: tuple[int, ...] | None, *, name: str) -> None:
    """Give the (single) graph input ``shape``; without one, every input must be static.

    Raises:
        UserError: a dynamic input without ``shape``, or a shape of the wrong rank.
    """
    inputs = graph_inputs(proto)
    if shape is None:
        for value in inputs:
            if None in graph_dims(value):
                raise UserError(f"{name}: input '{value.name}' has a dynamic shape "
                                f"{dims_text(graph_dims(value))}; give --input-shape (e.g. "
                                f"{_example(graph_dims(value))})")
        return
    if len(inputs) != 1:
        raise UserError(f"{name}: --input-shape sets one input; this graph has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise UserError(f"--input-shape {dims_text(list(shape))} has rank {len(shape)}; input "
                        f"'{inputs[0].name}' of {name} has rank {len(dims)} "
                        f"{dims_text(graph_dims(inputs[0]))}")
    for dim, size in zip(dims, shape):
        if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:
            raise UserError(f"--input-shape {dims_text(list(shape))} does not fit input "
                            f"'{inputs[0].name}' of {name}: {dims_text(graph_dims(inputs[0]))}")
        dim.Clear()
        dim.dim_value = size


def _example(dims: list[int | None]) -> str:
    return ",".join(str(d) if d is not None else ("1" if i == 0 else "224")
                    for i, d in enumerate(dims))


def _shapes(proto: Any, name: str) -> dict[str, Shape]:
    import onnx  # heavy: shape inference

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as exc:  # onnx raises InferenceError for inconsistent graphs
        raise UserError(f"{name}: ONNX shape inference failed ({first_line(exc)})") from None
    graph = inferred.graph
    shapes = {i.name: tuple(int(d) for d in i.dims) for i in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        shapes.setdefault(value.name, tuple(d or 1 for d in graph_dims(value)))
    return shapes


def analyze(proto: Any, *, name: str, input_shape: tuple[int, ...] | None = None) -> ModelCost:
    """Per-node and total cost of an ONNX graph (``proto`` is changed when
    ``input_shape`` fixes its input)."""
    fix_input_shape(proto, input_shape, name=name)
    shapes = _shapes(proto, name)
    constants = {i.name for i in proto.graph.initializer} | {
        o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    rows = [_node_cost(node, shapes, constants) for node in proto.graph.node]
    by_dtype: dict[str, int] = {}
    for init in proto.graph.initializer:
        dtype, bits = DTYPES.get(init.data_type, ("other", 8))
        by_dtype[dtype] = by_dtype.get(dtype, 0) + prod(init.dims) * bits // 8
    params = sum(prod(i.dims) for i in proto.graph.initializer)
    steps = [Step(tuple(i for i in n.input if i and i not in constants), tuple(n.output))
             for n in proto.graph.node]
    steps.insert(0, Step((), tuple(i.name for i in graph_inputs(proto))))
    sizes = {k: prod(v) for k, v in shapes.items() if k not in constants}
    return ModelCost(name=name, layers=tuple(rows), params=params, trainable_params=params,
                     peak_activation_elems=peak_live_elems(
                         steps, sizes, [o.name for o in proto.graph.output]),
                     weight_bytes=tuple(sorted(by_dtype.items())), source="onnx",
                     input_shape=shapes.get(graph_inputs(proto)[0].name, ())[1:])


def _node_cost(node: Any, shapes: dict[str, Shape], constants: set[str]) -> LayerCost:
    ins = [shapes.get(i, ()) for i in node.input if i]
    out = shapes.get(node.output[0], ()) if node.output else ()
    macs_rule, elementwise_rule = RULES.get(node.op_type, (_free, _free))
    weights = [prod(shapes.get(i, ())) for i in node.input if i in constants]
    return LayerCost(
        name=node.name or node.output[0], kind=node.op_type, output_shape=out[1:],
        macs=int(macs_rule(node, ins, out)), elementwise=int(elementwise_rule(node, ins, out)),
        params=sum(weights), trainable_params=sum(weights),
        input_elems=sum(prod(shapes.get(i, ())) for i in node.input if i and i not in constants),
        output_elems=sum(prod(shapes.get(o, ())) for o in node.output if o),
        known=node.op_type in RULES)


def file_ops(proto: Any) -> list[FileOp]:
    """The graph's nodes in file order with the tensor names they read and write."""
    return [FileOp(i, node.op_type, node.name or node.output[0], tuple(node.input),
                   tuple(node.output)) for i, node in enumerate(proto.graph.node)]
