"""Would XNNPACK run this .tflite model sparse? A lint read from the flatbuffer.

XNNPACK runs 1x1 convolutions as sparse-times-dense products (Elsen et al., "Fast
Sparse ConvNets", CVPR 2020) only on a subgraph that meets the conditions of TFLite's
XNNPACK delegate documentation, which this module checks one by one:

- the weights are stored in TFLite's sparse encoding (decoded by ``DENSIFY`` ops);
- the model is float (the sparse kernels are float only);
- it starts with a 3x3 stride-2 ``CONV_2D`` on 3 channels, no dilation, padding 1 on
  each side (TFLite's SAME padding gives that only on odd input sizes; on even ones it
  pads 0 before and 1 after);
- at least 2/3 of the weights of its 1x1 ``CONV_2D`` ops, together, are zero;
- it ends in a ``MEAN`` over the spatial axes (or a ``DEPTH_TO_SPACE``);
- the CPU is not x86: XNNPACK leaves sparse inference off there, so a sparse model
  runs dense on this kind of host and gains nothing but file size.

Other ops inside the subgraph (XNNPACK's list is longer) are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilectl.core.cost import prod
from device_profiles.tflite_cost import DTYPES, FlatGraph

#: CPU architectures where XNNPACK does not rewrite a subgraph for sparse inference.
X86 = frozenset({"x86", "x86_64", "amd64", "i686"})
MIN_ZERO_SHARE = 2 / 3
_SAME = 0  # tflite Padding enum: SAME = 0, VALID = 1


@dataclass(frozen=True)
class Condition:
    """One of XNNPACK's conditions, as the model meets or misses it."""

    name: str
    met: bool
    detail: str


@dataclass(frozen=True)
class SparseLint:
    """The conditions, checked for one CPU architecture."""

    arch: str
    conditions: tuple[Condition, ...]
    zero_share: float  # of the 1x1 convolutions' weights

    @property
    def sparse(self) -> bool:
        """Whether every condition is met (XNNPACK would run the 1x1 convs sparse)."""
        return all(c.met for c in self.conditions)

    def line(self) -> str:
        """One line: the verdict, what the model meets and what it misses."""
        met = [c.detail for c in self.conditions if c.met]
        missed = [c.detail for c in self.conditions if not c.met]
        verdict = "runs sparse" if self.sparse else "runs dense"
        return (f"XNNPACK sparse inference on {self.arch}: {verdict}"
                + (f"; meets: {', '.join(met)}" if met else "")
                + (f"; misses: {', '.join(missed)}" if missed else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "sparse": self.sparse, "zero_share": self.zero_share,
                "line": self.line(),
                "conditions": [{"name": c.name, "met": c.met, "detail": c.detail}
                               for c in self.conditions]}


def lint(data: bytes, *, arch: str) -> SparseLint:
    """Check a .tflite flatbuffer against XNNPACK's sparse-inference conditions on
    ``arch`` (a device profile's CPU architecture, e.g. ``arm64-v8a``)."""
    return _lint(FlatGraph(data), arch)


def lint_if_sparse(data: bytes, *, arch: str) -> SparseLint | None:
    """:func:`lint` for a flatbuffer with sparse weights (DENSIFY ops), else None."""
    graph = FlatGraph(data)
    return _lint(graph, arch) if "DENSIFY" in graph.kinds else None


def _lint(graph: FlatGraph, arch: str) -> SparseLint:
    share = _zero_share(graph)
    conditions = (_encoded(graph), _float(graph), _stem(graph),
                  Condition("zeros", share >= MIN_ZERO_SHARE,
                            f"1x1 convs {share:.0%} zero"
                            + ("" if share >= MIN_ZERO_SHARE else " (needs 67%)")),
                  _ends_in_mean(graph), _cpu(arch))
    return SparseLint(arch, conditions, share)


def _encoded(graph: FlatGraph) -> Condition:
    count = graph.kinds.count("DENSIFY")
    return Condition("encoding", count > 0, f"{count} DENSIFY weights" if count
                     else "no sparse weights (export with --sparse)")


def _float(graph: FlatGraph) -> Condition:
    convs = [op for op, kind in zip(graph.ops, graph.kinds) if kind == "CONV_2D"]
    quantized = sum(DTYPES.get(graph.tensors[graph.reads(op)[0]].Type()) != "float32"
                    for op in convs)
    return Condition("float", quantized == 0, "float" if quantized == 0
                     else f"{quantized} quantized convs (sparse kernels are float only)")


def _stem(graph: FlatGraph) -> Condition:
    """The first op (after input conversions and a PAD) is a 3x3 stride-2 CONV_2D on 3
    channels, padding 1 (quantized inputs are the float condition's business)."""
    first, pads = 0, (0, 0, 0, 0)
    while first < len(graph.ops) and graph.kinds[first] in ("QUANTIZE", "DEQUANTIZE"):
        first += 1
    if first < len(graph.ops) and graph.kinds[first] == "PAD":
        values = graph.values(graph.reads(graph.ops[first])[1])
        pads = tuple(int(v) for v in values[2:6]) if values is not None else pads
        first += 1
    if first >= len(graph.ops) or graph.kinds[first] != "CONV_2D":
        return Condition("stem", False, "no CONV_2D stem first")
    op = graph.ops[first]
    _, kh, kw, cin = graph.shapes[graph.reads(op)[1]]
    options = graph.schema.Conv2DOptions()
    table = op.BuiltinOptions()
    options.Init(table.Bytes, table.Pos)
    strides = (options.StrideH(), options.StrideW())
    dilated = (options.DilationHFactor(), options.DilationWFactor()) != (1, 1)
    if (kh, kw, cin, strides, dilated) != (3, 3, 3, (2, 2), False):
        return Condition("stem", False, f"stem is {kh}x{kw}/{strides[0]} on {cin} channels"
                         " (needs 3x3/2 on 3)")
    if options.Padding() == _SAME:
        _, height, width, _ = graph.shapes[graph.reads(op)[0]]
        pads = _same_pads(height) + _same_pads(width)
    if pads != (1, 1, 1, 1):
        return Condition("stem", False, f"stem pads {pads[0]}/{pads[1]} (needs 1 on each side)")
    return Condition("stem", True, "3x3/2 stem, padding 1")


def _same_pads(size: int, *, kernel: int = 3, stride: int = 2) -> tuple[int, int]:
    """TFLite's SAME padding of one axis: (before, after)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _zero_share(graph: FlatGraph) -> float:
    """The share of zero weights over every 1x1 CONV_2D (sparse-stored or dense)."""
    writer = graph.writer()
    size = zeros = 0
    for op, kind in zip(graph.ops, graph.kinds):
        if kind != "CONV_2D":
            continue
        weight = graph.reads(op)[1]
        shape = graph.shapes[weight]
        if len(shape) != 4 or shape[1:3] != (1, 1):
            continue
        source = writer.get(weight)
        if source is not None and graph.kinds[source] == "DENSIFY":
            weight = graph.reads(graph.ops[source])[0]
        values = graph.values(weight)
        if values is None:
            continue
        dense = prod(shape)
        size += dense
        zeros += dense - values.size + int(np.count_nonzero(values == 0))
    return zeros / size if size else 0.0


def _ends_in_mean(graph: FlatGraph) -> Condition:
    for op, kind in zip(graph.ops, graph.kinds):
        if kind == "DEPTH_TO_SPACE":
            return Condition("end", True, "ends in DEPTH_TO_SPACE")
        if kind == "MEAN" and len(graph.shapes[graph.reads(op)[0]]) == 4:
            axes = graph.values(graph.reads(op)[1])
            if axes is not None and sorted(int(a) % 4 for a in axes) == [1, 2]:
                return Condition("end", True, "spatial MEAN")
    return Condition("end", False, "no spatial MEAN to end on")


def _cpu(arch: str) -> Condition:
    if arch.lower() in X86:
        return Condition("cpu", False, f"{arch} (XNNPACK runs sparse models dense on x86)")
    return Condition("cpu", True, arch)
