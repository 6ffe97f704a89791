"""What a latency predictor sees of each op of a .tflite file: its kernel type and the
shape features its time depends on.

The unit is the runtime's op after the converter's fusion (a conv with its batch norm
and activation is one ``CONV_2D``), as nn-Meter (Zhang et al. 2021) argues the unit of
latency prediction must be the kernel the runtime runs, not the framework layer. The
kernel type splits an op type where the runtime runs different code: 1x1 convs are a
GEMM, k x k convs an indirect GEMM, grouped convs one GEMM per group; each is also split
by its precision (int8 or float), read from the op's first activation input. An int8
``MUL`` whose input-product-to-output scale lies outside the range XNNPACK's delegate
takes (:data:`XNN_MUL_SCALES`) is ``MUL.ref``: TFLite's builtin kernel runs it, about
5x slower here (the hard-swish of a deep int8 network, where activations are small).

Where the runtime runs two ops as one kernel, so does the predictor: an int8
``MUL(x, LOGISTIC(x))`` (the swish of Ramachandran et al. 2017, EfficientNet's and
MixNet's activation) costs XNNPACK no more than its ``LOGISTIC``
(``scripts/bench_fusion.py``: a 1.2M-element int8 MUL takes 0.10 ms alone and nothing
after its sigmoid in a graph, the pair alone the sigmoid's 0.024 ms; in float the MUL
keeps its time). The pair is one ``SWISH:int8`` kernel on the MUL, whose
:attr:`KernelOp.group` names the LOGISTIC; the LOGISTIC's kernel is :data:`FUSED`, no
time of its own. The calibration cuts and times the pair together.

Features are those a runtime's time follows: MACs, the bytes the op reads and writes
(memory access cost, Ma et al. 2018, ShuffleNet V2), and the shape: output size,
channels, kernel area, stride and groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from device_profiles.tflite_cost import DTYPE_BITS, DTYPES, FlatGraph, as_graph, op_cost
from mobilectl.core.cost import prod

#: feature names, in the order of :attr:`KernelOp.features`
FEATURES = ("macs", "in_bytes", "out_bytes", "weight_bytes", "out_elems", "in_channels",
            "out_channels", "out_hw", "kernel_area", "stride", "groups", "inputs", "broadcast",
            "dilation")
INT_TYPES = frozenset({"int8", "uint8", "int16"})
#: the input-product-to-output scales XNNPACK's delegate takes for a quantized MUL,
#: [min, max); outside them the op stays on TFLite's builtin kernel
XNN_MUL_SCALES = (2.0 ** -16, 2.0 ** 8)
#: how ops are typed; a cache of typed ops keys on it (2: ``MUL.ref``; 3: ``SWISH``)
TYPES_VERSION = 3
#: the kernel type (before the precision) of an op the runtime runs inside another
#: op's kernel: it has no time of its own
FUSED = "FUSED"
#: the kernel types that run on TFLite's builtin kernels instead of XNNPACK: what their
#: ops are, and why XNNPACK refuses them
BUILTIN_FALLBACKS = {"MUL.ref:int8": ("int8 MUL", "input-product to output scale outside "
                                                 "[2^-16, 2^8): small activations")}


def is_fused(kernel: str) -> bool:
    """A kernel type of ops that run inside another op's kernel."""
    return kernel.partition(":")[0] == FUSED


@dataclass(frozen=True)
class KernelOp:
    """One op of a file as the predictor sees it."""

    index: int
    op: str  # the TFLite op type
    kernel: str  # the kernel type the predictor has a model for, e.g. ``CONV_2D.1x1:int8``
    name: str  # the op's first output tensor
    features: tuple[float, ...]
    group: tuple[int, ...] = ()  # the other ops this kernel runs (their kernel: FUSED)

    @property
    def fused(self) -> bool:
        """Run inside another op's kernel: no time of its own."""
        return is_fused(self.kernel)

    def feature(self, name: str) -> float:
        return self.features[FEATURES.index(name)]


def _bytes(graph: FlatGraph, index: int) -> int:
    dtype = DTYPES.get(graph.tensors[index].Type(), "float32")
    return prod(graph.shapes[index]) * DTYPE_BITS.get(dtype, 32) // 8


def _subtype(op: str, weights: tuple[int, ...], cin: int) -> str:
    """``CONV_2D`` as the code XNNPACK runs: ``.1x1``, ``.kxk`` or ``.grouped``."""
    if op != "CONV_2D" or len(weights) != 4:
        return op
    if weights[3] and cin > weights[3]:
        return "CONV_2D.grouped"
    return "CONV_2D.1x1" if weights[1] * weights[2] == 1 else "CONV_2D.kxk"


def _scale(graph: FlatGraph, index: int) -> float | None:
    quantization = graph.tensors[index].Quantization()
    if quantization is None or not quantization.ScaleLength():
        return None
    return float(quantization.Scale(0))


def _mul_falls_back(graph: FlatGraph, reads: list[int], writes: list[int]) -> bool:
    """An int8 MUL that XNNPACK's delegate refuses for its scales."""
    scales = [_scale(graph, t) for t in (*reads[:2], *writes[:1])]
    if len(scales) != 3 or None in scales or not scales[2]:
        return False
    ratio = scales[0] * scales[1] / scales[2]
    return not XNN_MUL_SCALES[0] <= ratio < XNN_MUL_SCALES[1]


def _precision(graph: FlatGraph, activations: list[int], outputs: list[int]) -> str:
    first = (activations or outputs or [None])[0]
    dtype = DTYPES.get(graph.tensors[first].Type(), "float32") if first is not None else "float32"
    return "int8" if dtype in INT_TYPES else "fp32"


def kernel_ops(data: bytes | FlatGraph) -> list[KernelOp]:
    """Every op of the first subgraph, in execution order, as kernel type and features,
    fused as the runtime fuses (:func:`_fuse_swish`)."""
    graph = as_graph(data)
    ops = [_kernel_op(graph, i, op, kind) for i, (op, kind) in enumerate(zip(graph.ops, graph.kinds))]
    return _fuse_swish(graph, ops)


def _swish_gate(graph: FlatGraph, mul: int, writer: dict[int, int],
                readers: dict[int, int]) -> int | None:
    """The LOGISTIC of an int8 ``MUL(x, LOGISTIC(x))`` whose sigmoid only the MUL
    reads (None: the MUL is no swish)."""
    reads = graph.reads(graph.ops[mul])
    for gate, other in ((reads[0], reads[1]), (reads[1], reads[0])) if len(reads) == 2 else ():
        sigmoid = writer.get(gate)
        if (sigmoid is not None and graph.kinds[sigmoid] == "LOGISTIC" and readers[gate] == 1
                and graph.reads(graph.ops[sigmoid]) == [other]):
            return sigmoid
    return None


def _fuse_swish(graph: FlatGraph, ops: list[KernelOp]) -> list[KernelOp]:
    """Each int8 swish as one ``SWISH:int8`` kernel on its MUL; its LOGISTIC
    :data:`FUSED`."""
    found, writer, readers = list(ops), graph.writer(), graph.readers()
    for mul in (op for op in ops if op.kernel == "MUL:int8"):
        sigmoid = _swish_gate(graph, mul.index, writer, readers)
        if sigmoid is not None:
            found[mul.index] = replace(mul, kernel="SWISH:int8", group=(sigmoid,))
            found[sigmoid] = replace(ops[sigmoid], kernel=f"{FUSED}:int8")
    return found


def _kernel_op(graph: FlatGraph, index: int, op, kind: str) -> KernelOp:
    reads, writes = graph.reads(op), graph.writes(op)
    activations = [t for t in reads if not graph.constant[t]]
    constants = [t for t in reads if graph.constant[t]]
    weights = graph.shapes[constants[0]] if constants else ()
    out = graph.shapes[writes[0]] if writes else ()
    first_in = graph.shapes[activations[0]] if activations else ()
    cin = first_in[-1] if first_in else 0
    cout = out[-1] if out else 0
    cost = op_cost(graph, op, kind)
    macs = cost.macs or cost.elementwise
    kernel_area = weights[1] * weights[2] if kind in ("CONV_2D", "DEPTHWISE_CONV_2D") \
        and len(weights) == 4 else (graph.pool_area(op) if "POOL" in kind else 1)
    in_hw = first_in[1] * first_in[2] if len(first_in) == 4 else 0
    out_hw = out[1] * out[2] if len(out) == 4 else 1
    stride = round(math.sqrt(in_hw / out_hw)) if in_hw and out_hw else 1
    groups = cin // weights[3] if kind == "CONV_2D" and len(weights) == 4 and weights[3] else 1
    broadcast = len({prod(graph.shapes[t]) for t in activations}) > 1
    features = (macs, sum(_bytes(graph, t) for t in activations), sum(_bytes(graph, t) for t in writes),
                sum(_bytes(graph, t) for t in constants), prod(out) if out else 0, cin, cout,
                out_hw, kernel_area, stride, groups, len(activations), int(broadcast),
                graph.dilation(op, kind))
    precision = _precision(graph, activations, writes)
    subtype = _subtype(kind, weights, cin)
    if kind == "MUL" and precision == "int8" and _mul_falls_back(graph, reads, writes):
        subtype = "MUL.ref"
    kernel = f"{subtype}:{precision}"
    name = graph.tensors[writes[0]].Name().decode() if writes else kind
    return KernelOp(index, kind, kernel, name, tuple(float(f) for f in features))
