"""The FLOPs proxy of a .tflite file, read from its flatbuffer (LiteRT's schema): ops
in the order the interpreter runs them, tensor shapes, constant tensors and their
types. MACs follow the same rules as the Keras proxy (:mod:`mobilectl.core.cost`):
convolutions count ``output elements x kernel area x input channels per group``,
depthwise ``output elements x kernel area``, fully connected ``output elements x
inner size``. Batch norm is folded into the convolutions by the converter, so the
params are the stored constants, not Keras' count.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mobilectl.core.cost import LayerCost, ModelCost, Shape, Step, peak_live_elems, prod
from mobilectl.core.errors import UserError
from device_profiles.inspect import tflite_runtime
from device_profiles.layer_map import FileOp

#: TensorType enum value -> numpy dtype name (LiteRT's schema, the types models use).
DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
          7: "int16", 9: "int8", 10: "float64", 17: "int4"}
DTYPE_BITS = {"float32": 32, "float16": 16, "int32": 32, "uint8": 8, "int64": 64, "bool": 8,
              "int16": 16, "int8": 8, "float64": 64, "int4": 4}


class FlatGraph:
    """The first subgraph of a flatbuffer, as shapes, constants and ops (also read by
    :mod:`device_profiles.sparse_lint`)."""

    def __init__(self, data: bytes) -> None:
        from ai_edge_litert import schema_py_generated as schema  # heavy: generated schema

        model = schema.Model.GetRootAs(data, 0)
        graph = model.Subgraphs(0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.schema = schema
        self.model = model
        self.tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
        self.shapes: list[Shape] = [tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength()
                                    else () for t in self.tensors]
        self.inputs = [int(i) for i in graph.InputsAsNumpy()]
        self.outputs = [int(i) for i in graph.OutputsAsNumpy()]
        self.constant = [model.Buffers(t.Buffer()).DataLength() > 0
                         or model.Buffers(t.Buffer()).Size() > 0 for t in self.tensors]
        self.ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        self.kinds = [names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "CUSTOM")
                      if c.CustomCode() is None else c.CustomCode().decode()
                      for c in (codes[op.OpcodeIndex()] for op in self.ops)]

    def values(self, index: int) -> np.ndarray | None:
        """The stored values of constant tensor ``index`` (flat; for a sparse tensor,
        only the values its encoding keeps), or None for a tensor computed at run time."""
        dtype = DTYPES.get(self.tensors[index].Type())
        data = self.model.Buffers(self.tensors[index].Buffer()).DataAsNumpy()
        if dtype is None or dtype == "int4" or isinstance(data, int):
            return None
        return np.frombuffer(data.tobytes(), dtype=dtype)

    def writer(self) -> dict[int, int]:
        """Tensor index -> the index of the op that writes it."""
        return {t: i for i, op in enumerate(self.ops) for t in self.writes(op)}

    def readers(self) -> dict[int, int]:
        """Tensor index -> how many op inputs read it."""
        counts: dict[int, int] = {}
        for op in self.ops:
            for t in self.reads(op):
                counts[t] = counts.get(t, 0) + 1
        return counts

    def reads(self, op) -> list[int]:
        return [int(i) for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []

    def writes(self, op) -> list[int]:
        return [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []

    def dilation(self, op, kind: str) -> int:
        """A conv's or depthwise conv's dilation (1 for any other op)."""
        kinds = {"CONV_2D": self.schema.Conv2DOptions, "DEPTHWISE_CONV_2D":
                 self.schema.DepthwiseConv2DOptions}
        table = op.BuiltinOptions() if kind in kinds else None
        if table is None:
            return 1
        options = kinds[kind]()
        options.Init(table.Bytes, table.Pos)
        return max(options.DilationWFactor(), options.DilationHFactor(), 1)

    def pool_area(self, op) -> int:
        options = self.schema.Pool2DOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        return options.FilterWidth() * options.FilterHeight()


Rule = Callable[[FlatGraph, object, list[Shape], Shape], int]


def _conv(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    _, kh, kw, cin = ins[1]  # filter [O, H, W, I/groups]
    return prod(out) * kh * kw * cin


def _depthwise(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return prod(out) * ins[1][1] * ins[1][2]  # filter [1, H, W, O]


def _inner(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return prod(out) * ins[0][-1]  # fully connected / batch matmul: K per output


def _per_output(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return prod(out)


def _merge(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return prod(out) * max(1, len(ins) - 1)


def _pool(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return prod(out) * g.pool_area(op)


def _reduce(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return prod(ins[0])


def _free(g: FlatGraph, op, ins: list[Shape], out: Shape) -> int:
    return 0


#: op type -> (MACs rule, element-wise rule)
RULES: dict[str, tuple[Rule, Rule]] = {
    "CONV_2D": (_conv, _free), "DEPTHWISE_CONV_2D": (_depthwise, _free),
    "FULLY_CONNECTED": (_inner, _free), "BATCH_MATMUL": (_inner, _free),
    **{k: (_free, _merge) for k in ("ADD", "MUL", "SUB", "DIV", "MAXIMUM", "MINIMUM",
                                    "SQUARED_DIFFERENCE")},
    **{k: (_free, _per_output) for k in (
        "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "HARD_SWISH", "LOGISTIC",
        "TANH", "SOFTMAX", "GELU", "EXP", "RSQRT", "SQRT", "ABS", "NEG", "QUANTIZE",
        "DEQUANTIZE", "CAST", "ELU")},
    "AVERAGE_POOL_2D": (_free, _pool), "MAX_POOL_2D": (_free, _pool),
    "MEAN": (_free, _reduce), "SUM": (_free, _reduce), "REDUCE_MAX": (_free, _reduce),
    **{k: (_free, _free) for k in (
        "RESHAPE", "TRANSPOSE", "CONCATENATION", "SPLIT", "SPLIT_V", "PAD", "PADV2",
        "STRIDED_SLICE", "SLICE", "SQUEEZE", "EXPAND_DIMS", "PACK", "UNPACK", "GATHER",
        "SHAPE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "RESIZE_NEAREST_NEIGHBOR")},
}


def read(path: Path) -> bytes:
    """The bytes of a loadable .tflite file, or a UserError saying what it is."""
    from ai_edge_litert import schema_py_generated as schema  # heavy: generated schema

    data = path.read_bytes()
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise UserError(f"{path}: not a .tflite model (no TFL3 flatbuffer identifier)")
    tflite_runtime(path)  # LiteRT verifies the whole flatbuffer
    return data


def as_graph(data: bytes | FlatGraph) -> FlatGraph:
    """``data`` read as a :class:`FlatGraph` (a graph already read: itself)."""
    return data if isinstance(data, FlatGraph) else FlatGraph(data)


def analyze(data: bytes | FlatGraph, *, name: str) -> ModelCost:
    """Per-op and total cost of a TFLite flatbuffer (its first subgraph), as bytes or
    already read.

    Raises:
        UserError: the flatbuffer is truncated or inconsistent.
    """
    try:
        graph = as_graph(data)
        rows = [op_cost(graph, op, kind) for op, kind in zip(graph.ops, graph.kinds)]
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise UserError(f"{name}: the .tflite flatbuffer is truncated or corrupt "
                        f"({type(exc).__name__})") from None
    constants = [i for i, const in enumerate(graph.constant) if const]
    by_dtype: dict[str, int] = {}
    for i in constants:
        dtype = DTYPES.get(graph.tensors[i].Type(), "other")
        by_dtype[dtype] = by_dtype.get(dtype, 0) + prod(graph.shapes[i]) * DTYPE_BITS.get(dtype, 8) // 8
    params = sum(prod(graph.shapes[i]) for i in constants)
    return ModelCost(name=name, layers=tuple(rows), params=params, trainable_params=params,
                     peak_activation_elems=_peak(graph),
                     weight_bytes=tuple(sorted(by_dtype.items())), source="tflite",
                     input_shape=graph.shapes[graph.inputs[0]][1:] if graph.inputs else ())


def op_cost(graph: FlatGraph, op, kind: str) -> LayerCost:
    """One op's MACs, element-wise ops, stored constants and activation sizes."""
    reads, writes = graph.reads(op), graph.writes(op)
    ins = [graph.shapes[i] for i in reads]
    out = graph.shapes[writes[0]] if writes else ()
    macs_rule, elementwise_rule = RULES.get(kind, (_free, _free))
    activations = [i for i in reads if not graph.constant[i]]
    weights = sum(prod(graph.shapes[i]) for i in reads if graph.constant[i])
    return LayerCost(
        name=graph.tensors[writes[0]].Name().decode() if writes else kind, kind=kind,
        output_shape=out[1:], macs=int(macs_rule(graph, op, ins, out)),
        elementwise=int(elementwise_rule(graph, op, ins, out)),
        params=weights, trainable_params=weights,
        input_elems=sum(prod(graph.shapes[i]) for i in activations),
        output_elems=sum(prod(graph.shapes[i]) for i in writes), known=kind in RULES)


def _peak(graph: FlatGraph) -> int:
    steps = [Step(tuple(graph.reads(op)), tuple(graph.writes(op))) for op in graph.ops]
    sizes = {i: prod(shape) for i, shape in enumerate(graph.shapes) if not graph.constant[i]}
    for i in graph.inputs:  # the input lives until its last reader, like Keras' InputLayer
        steps.insert(0, Step((), (i,)))
    return peak_live_elems(steps, sizes, graph.outputs)



def file_ops(data: bytes | FlatGraph) -> list[FileOp]:
    """The ops of the first subgraph in execution order, with the tensor names they read
    and write (an op's own name is its first output's)."""
    graph = as_graph(data)
    names = [t.Name().decode() for t in graph.tensors]
    return [FileOp(i, kind, names[graph.writes(op)[0]] if graph.writes(op) else kind,
                   tuple(names[t] for t in graph.reads(op)),
                   tuple(names[t] for t in graph.writes(op)))
            for i, (op, kind) in enumerate(zip(graph.ops, graph.kinds))]
