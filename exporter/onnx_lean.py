"""Lean ONNX graphs: named passes that take tf2onnx's output to what a native NCHW
export of the same network looks like, each exact (the pipeline verifies the numbers
of every artifact afterwards, and the conversion test checks every family).

tf2onnx writes a Keras (NHWC) graph as NCHW convolutions between layout Transposes
and relies on its transpose optimiser to cancel them; that optimiser stops at a
channel shuffle (a 5-D Reshape/Transpose/Reshape, ShuffleNet V1/V2, Zhang et al. 2018;
Ma et al. 2018) and leaves the Transposes of every branch after it, and it never folds
a batch norm that follows a depthwise conv. The passes, in order (:data:`PASSES`):

1. ``shuffle-in-nchw``: a shuffle that ends in NHWC is rewritten as the NCHW shuffle
   (``[N,g,c,H,W]``, perm ``0,2,1,3,4``) followed by one plain layout Transpose, which
   the next pass can move and cancel like any other.
2. ``portable-optimise``: onnxruntime's own offline optimiser at its basic level, the
   level of rewrites that keep standard ONNX ops and suit every execution provider
   (constant folding, conv + batch norm / Mul / Add fusion, its transpose optimiser,
   identity elimination); saved, so any ONNX consumer gets the result.
3. ``identity-reshapes``: Reshape/Squeeze/Unsqueeze whose output shape equals their
   input shape (tf2onnx writes a 1x1 layout change as a Reshape) are removed.

4. ``prelu``: ``Relu(x) + c * Relu(-x)`` (how Keras writes PReLU) becomes ``PRelu``,
   which NNAPI and both CoreML formats run (CoreML runs no ``Neg``).
5. ``pad-into-pool``: a zero ``Pad`` of the spatial axes in front of a pooling op
   moves into the pool's own ``pads`` where that is exact: always for an average pool
   that counts the padding, for a max pool only when its input is non-negative
   (after a ReLU), where a zero pad and the pool's own padding give the same maxima.

Hard-swish stays Add/Clip/Mul: onnxruntime's NNAPI EP runs those in one partition and
has no ``HardSwish`` kernel. For onnxruntime's CPU EP on a PC (:data:`FUSIONS`) it is
fused, and the NCHW channel shuffle becomes one ``Gather`` of the channels in shuffled
order, which onnxruntime's layout optimiser sees through in int8.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Ops whose output is never negative: a max pool of their output equals one that pads
#: with zeros instead of -inf.
NON_NEGATIVE = frozenset({"Relu"})


@dataclass(frozen=True)
class GraphPass:
    """One named rewrite of a ModelProto, in place; returns how many places it changed."""

    name: str
    run: Callable[[Any], int]


class _Index:
    """Who produces and who consumes each tensor, and the constant initializers."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper  # heavy: onnx loads only when a graph is rewritten

        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.users: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.users.setdefault(name, []).append(node)
        self.consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.outputs = {o.name for o in graph.output}

    def only_user(self, tensor: str) -> Any | None:
        users = self.users.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def add_const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper  # heavy: onnx loads only when a graph is rewritten

        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.consts[name] = value
        return name


def _replace(proto: Any, anchor: Any, new: Any, removed: list[Any]) -> None:
    """Put ``new`` where ``anchor`` stands and remove ``anchor`` and ``removed``."""
    proto.graph.node.insert(list(proto.graph.node).index(anchor), new)
    for node in [anchor, *removed]:
        proto.graph.node.remove(node)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _set_attr(node: Any, name: str, value: Any) -> None:
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def _shuffles_in_nchw(proto: Any) -> int:
    """A channel shuffle that ends in NHWC, ``Reshape -> Transpose -> Reshape [N,H,W,C]``,
    becomes the NCHW shuffle ``[N,g,c,H,W]``, perm ``0,2,1,3,4``, ``[N,C,H,W]`` followed
    by a Transpose to NHWC (and, where the shuffle started from NHWC, preceded by one
    to NCHW)."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    index, changed = _Index(proto.graph), 0
    for node in list(proto.graph.node):
        first = index.producer.get(node.input[0]) if node.op_type == "Transpose" else None
        last = index.only_user(node.output[0]) if first is not None else None
        if last is None or first.op_type != "Reshape" or last.op_type != "Reshape":
            continue
        dims = _shuffle_dims(index.const(first.input[1]), index.const(last.input[1]),
                             list(_attr(node, "perm", [])))
        if dims is None:
            continue
        batch, groups, per_group, height, width, from_nhwc, to_nhwc = dims
        if from_nhwc:
            nodes = list(proto.graph.node)
            nodes_at = nodes.index(first)
            proto.graph.node.insert(nodes_at, helper.make_node(
                "Transpose", [first.input[0]], [f"{first.output[0]}/nchw_in"],
                name=f"{first.name}/to_nchw", perm=[0, 3, 1, 2]))
            first.input[0] = f"{first.output[0]}/nchw_in"
        split = np.array([batch, groups, per_group, height, width], dtype=np.int64)
        first.input[1] = index.add_const(f"{first.name}/nchw_shape", split)
        _set_attr(node, "perm", [0, 2, 1, 3, 4])
        joined = np.array([batch, groups * per_group, height, width], dtype=np.int64)
        last.input[1] = index.add_const(f"{last.name}/nchw_shape", joined)
        changed += 1
        if not to_nhwc:
            continue
        layout_out, last.output[0] = last.output[0], f"{last.output[0]}/nchw"
        position = list(proto.graph.node).index(last) + 1
        proto.graph.node.insert(position, helper.make_node(
            "Transpose", [last.output[0]], [layout_out], name=f"{last.name}/to_nhwc",
            perm=[0, 2, 3, 1]))
    return changed


def _shuffle_dims(split: np.ndarray | None, joined: np.ndarray | None,
                  perm: list[int]) -> tuple[int, int, int, int, int, bool, bool] | None:
    """(batch, groups, channels per group, H, W, whether the input is NHWC, whether the
    output is) of a shuffle written as Reshape ``split`` -> Transpose ``perm`` ->
    Reshape ``joined`` (a 1x1 output may be read as NCHW already)."""
    if split is None or joined is None or split.shape != (5,) or joined.shape != (4,):
        return None
    batch = int(joined[0])
    if perm == [0, 3, 4, 2, 1]:  # from NCHW: [N, g, c, H, W] -> [N, H, W, c, g]
        groups, per_group, height, width = (int(v) for v in split[1:])
        from_nhwc = False
    elif perm == [0, 1, 2, 4, 3]:  # from NHWC: [N, H, W, g, c] -> [N, H, W, c, g]
        height, width, groups, per_group = (int(v) for v in split[1:])
        from_nhwc = True
    else:
        return None
    channels = groups * per_group
    nhwc_out = [int(v) for v in joined[1:]] == [height, width, channels]
    nchw_out = height == width == 1 and [int(v) for v in joined[1:]] == [channels, 1, 1]
    if not (nhwc_out or nchw_out):
        return None
    return batch, groups, per_group, height, width, from_nhwc, nhwc_out


def _strided_convs(proto: Any) -> int:
    """A stride-1 Conv whose output is subsampled by a Slice (every 2nd row and
    column from the first) becomes the same Conv at stride 2: TensorFlow has no strided
    dilated convolution, ONNX has (ESPNetv2's strided EESP branches, Mehta et al.
    2019), and it computes only the kept outputs."""
    index, changed = _Index(proto.graph), 0
    for conv in proto.graph.node:
        if conv.op_type != "Conv" or list(_attr(conv, "strides", [1, 1])) != [1, 1]:
            continue
        cut = index.only_user(conv.output[0])
        if cut is None or cut.op_type != "Slice" or len(cut.input) != 5:
            continue
        starts, ends, axes, steps = (index.const(name) for name in cut.input[1:])
        if any(v is None for v in (starts, ends, axes, steps)) or starts.any():
            continue
        step_of = {int(axis) % 4: int(step) for axis, step in zip(axes, steps)}
        if (step_of.get(2), step_of.get(3)) != (2, 2) or step_of.get(0, 1) != 1 \
                or step_of.get(1, 1) != 1 or (ends < 10**9).any():
            continue
        _set_attr(conv, "strides", [2, 2])
        conv.output[0] = cut.output[0]
        proto.graph.node.remove(cut)
        changed += 1
    return changed


def _flattens_in_nchw(proto: Any) -> int:
    """Transpose to NHWC -> Reshape ``[N, -1]`` -> MatMul/Gemm by constant weights
    becomes the Reshape of the NCHW tensor and the same product with the weights' rows
    in NCHW order (a Keras ``Flatten`` before a dense layer)."""
    shapes, index, changed = _static_shapes(proto), _Index(proto.graph), 0
    for flip in list(proto.graph.node):
        flat = index.only_user(flip.output[0]) if flip.op_type == "Transpose" else None
        dense = index.only_user(flat.output[0]) if flat is not None else None
        dims = shapes.get(flip.input[0])
        if (dense is None or flat.op_type != "Reshape" or dense.op_type not in {"MatMul", "Gemm"}
                or list(_attr(flip, "perm", [])) != [0, 2, 3, 1] or dims is None
                or len(dims) != 4 or dense.input[0] != flat.output[0]
                or index.const(dense.input[1]) is None or _attr(dense, "transA", 0)
                or shapes.get(flat.output[0]) != (dims[0], int(np.prod(dims[1:])))):
            continue
        _, channels, height, width = dims
        order = np.arange(height * width * channels).reshape(height, width, channels)
        rows = order.transpose(2, 0, 1).reshape(-1)  # the NHWC row of each NCHW row
        weights = index.const(dense.input[1])
        weights = weights[:, rows] if _attr(dense, "transB", 0) else weights[rows]
        dense.input[1] = index.add_const(f"{dense.name}/nchw_weights", weights)
        flat.input[0] = flip.input[0]
        proto.graph.node.remove(flip)
        changed += 1
    return changed


def _grouped_convs(proto: Any) -> int:
    """``Split`` (channels) -> one Conv per part -> ``Concat`` (channels) becomes one
    Conv with ``group`` = the number of parts (how Keras' grouped convolution arrives
    from tf2onnx), when the parts are equal and the convs alike."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    index, changed = _Index(proto.graph), 0
    for split in list(proto.graph.node):
        parts = _group_parts(index, split) if split.op_type == "Split" else None
        if parts is None:
            continue
        convs, concat = parts
        weights = np.concatenate([index.const(c.input[1]) for c in convs])
        inputs = [split.input[0], index.add_const(f"{concat.name}/weights", weights)]
        if len(convs[0].input) > 2:
            biases = np.concatenate([index.const(c.input[2]) for c in convs])
            inputs.append(index.add_const(f"{concat.name}/bias", biases))
        conv = helper.make_node("Conv", inputs, list(concat.output), name=convs[0].name)
        conv.attribute.extend(a for a in convs[0].attribute if a.name != "group")
        conv.attribute.extend([helper.make_attribute("group", len(convs))])
        _replace(proto, concat, conv, [split, *convs])
        changed += 1
    return changed


def _group_parts(index: _Index, split: Any) -> tuple[list[Any], Any] | None:
    """(the convs in order, the concat) when ``split`` starts a grouped convolution."""
    convs = [index.only_user(out) for out in split.output]
    if len(convs) < 2 or _attr(split, "axis", 0) != 1 or any(
            c is None or c.op_type != "Conv" or c.input[0] != out
            for c, out in zip(convs, split.output)):
        return None
    concat = index.only_user(convs[0].output[0])
    if (concat is None or concat.op_type != "Concat" or _attr(concat, "axis", 0) != 1
            or list(concat.input) != [c.output[0] for c in convs]
            or any(index.only_user(c.output[0]) is not concat for c in convs)):
        return None
    attrs = [sorted((a.name, a.SerializeToString()) for a in c.attribute) for c in convs]
    consts = [[index.const(name) for name in c.input[1:]] for c in convs]
    if (any(a != attrs[0] for a in attrs) or _attr(convs[0], "group", 1) != 1
            or any(v is None for row in consts for v in row)
            or len({tuple(v.shape for v in row) for row in consts}) != 1
            or len({len(row) for row in consts}) != 1):
        return None
    return convs, concat


def _reshapes_as_transposes(proto: Any) -> int:
    """A Reshape between ``[N,1,1,C]`` and ``[N,C,1,1]`` is a layout change of a 1x1
    map (tf2onnx writes such Transposes as Reshapes); as a Transpose again, the
    transpose optimiser can cancel it against its neighbours."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    shapes, changed = _static_shapes(proto), 0
    perms = {(True, False): [0, 3, 1, 2], (False, True): [0, 2, 3, 1]}
    for node in proto.graph.node:
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if node.op_type != "Reshape" or before is None or after is None or len(before) != 4:
            continue
        key = (_is_nhwc_1x1(before, after), _is_nhwc_1x1(after, before))
        if key not in perms:
            continue
        del node.input[1:]
        node.op_type = "Transpose"
        node.attribute.extend([helper.make_attribute("perm", perms[key])])
        changed += 1
    return changed


def _is_nhwc_1x1(shape: tuple[int, ...], other: tuple[int, ...]) -> bool:
    """Whether ``shape`` is ``[N,1,1,C]`` and ``other`` is ``[N,C,1,1]`` (C > 1)."""
    return (len(other) == 4 and shape[1:3] == (1, 1) and shape[3] > 1
            and other == (shape[0], shape[3], 1, 1))


def _portable_optimise(proto: Any) -> int:
    """onnxruntime's basic-level offline optimisation, saved; the opset imports it adds
    for domains the graph does not use are dropped again."""
    import onnx  # heavy: onnx loads only when a graph is rewritten
    import onnxruntime as ort  # heavy: native runtime

    before = len(proto.graph.node)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "optimised.onnx"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(path)
        ort.InferenceSession(proto.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        optimised = onnx.load(str(path))
    used = {node.domain for node in optimised.graph.node} | {""}
    kept = [o for o in optimised.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del optimised.opset_import[:]
    optimised.opset_import.extend(kept)
    proto.CopyFrom(optimised)
    return before - len(proto.graph.node)


def _unit_transposes_as_reshapes(proto: Any) -> int:
    """A Transpose that moves only size-1 axes copies nothing a Reshape would not: it
    becomes that Reshape (which onnxruntime runs without a copy)."""
    shapes, index, changed = _static_shapes(proto), _Index(proto.graph), 0
    for node in proto.graph.node:
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if node.op_type != "Transpose" or before is None or after is None:
            continue
        perm = list(_attr(node, "perm", reversed(range(len(before)))))
        moved = [axis for axis in perm if before[axis] != 1]
        if moved != sorted(moved):
            continue
        node.op_type = "Reshape"
        del node.attribute[:]
        node.input.append(index.add_const(f"{node.name}/shape", np.array(after, np.int64)))
        changed += 1
    return changed


def _static_shapes(proto: Any) -> dict[str, tuple[int, ...]]:
    import onnx  # heavy: onnx loads only when a graph is rewritten

    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


RESHAPES = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten"})


def _collapse_reshape_chains(proto: Any) -> int:
    """A chain of Reshape/Squeeze/Unsqueeze/Flatten ops only changes the shape: its last
    op becomes one Reshape of the chain's input to its static output shape."""
    shapes, index, changed = _static_shapes(proto), _Index(proto.graph), 0
    for node in proto.graph.node:
        if node.op_type not in RESHAPES or node.output[0] not in shapes:
            continue
        source = node.input[0]
        while (index.producer.get(source) is not None
               and index.producer[source].op_type in RESHAPES
               and index.only_user(source) is not None):
            source = index.producer[source].input[0]
        if source == node.input[0]:
            continue
        shape = index.add_const(f"{node.name}/shape", np.array(shapes[node.output[0]], np.int64))
        node.op_type = "Reshape"
        del node.attribute[:]
        node.input[:] = [source, shape]
        changed += 1
    dead = {out for node in proto.graph.node for out in node.output} - {
        name for node in proto.graph.node for name in node.input} - index.outputs
    for node in [n for n in proto.graph.node if n.op_type in RESHAPES and n.output[0] in dead]:
        proto.graph.node.remove(node)
    return changed


def _drop_identity_reshapes(proto: Any) -> int:
    """Reshape/Squeeze/Unsqueeze whose output has its input's static shape."""
    shapes, index = _static_shapes(proto), _Index(proto.graph)
    dropped = []
    for node in proto.graph.node:
        if node.op_type not in {"Reshape", "Squeeze", "Unsqueeze"}:
            continue
        src, out = node.input[0], node.output[0]
        if out in index.outputs or src not in shapes or shapes[src] != shapes.get(out):
            continue
        for user in index.users.get(out, []):
            user.input[:] = [src if name == out else name for name in user.input]
        index.users.setdefault(src, []).extend(index.users.pop(out, []))
        dropped.append(node)
    for node in dropped:
        proto.graph.node.remove(node)
    return len(dropped)


def _shuffles_as_gathers(proto: Any) -> int:
    """An NCHW channel shuffle, ``Reshape [N,g,c,H,W] -> Transpose 0,2,1,3,4 -> Reshape
    [N,g*c,H,W]``, becomes one ``Gather`` of the channels in shuffled order (the same
    values). onnxruntime runs int8 convolutions in NHWC and cancels the layout
    Transposes it adds around them through a Gather, not through a 5-D Reshape: on
    ShuffleNet V2 this leaves 34 Transposes instead of 47."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    index, changed = _Index(proto.graph), 0
    for node in list(proto.graph.node):
        if node.op_type != "Transpose" or list(_attr(node, "perm", [])) != [0, 2, 1, 3, 4]:
            continue
        first, last = index.producer.get(node.input[0]), index.only_user(node.output[0])
        if first is None or last is None or {first.op_type, last.op_type} != {"Reshape"}:
            continue
        split, joined = index.const(first.input[1]), index.const(last.input[1])
        if split is None or joined is None or split.shape != (5,) or joined.shape != (4,) \
                or index.only_user(first.output[0]) is not node:
            continue
        groups, per_group = int(split[1]), int(split[2])
        if int(joined[1]) != groups * per_group:
            continue
        order = np.arange(groups * per_group, dtype=np.int64).reshape(groups, per_group).T
        gather = helper.make_node("Gather", [first.input[0], index.add_const(
            f"{node.name}/channels", order.ravel())], [last.output[0]], name=node.name, axis=1)
        _replace(proto, first, gather, [node, last])
        changed += 1
    return changed


def _prelus(proto: Any) -> int:
    """``Add(Relu(x), Mul(Relu(Neg(x)), c))`` -> ``PRelu(x, -c)``; a per-channel slope
    ``[1,C,1,1]`` is stored as ``[C,1,1]``, the shape CoreML takes."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    index, changed = _Index(proto.graph), 0
    for add in list(proto.graph.node):
        parts = _prelu_parts(index, add) if add.op_type == "Add" else None
        if parts is None:
            continue
        x, scale, removed = parts
        slope = -scale.astype(np.float32)
        if slope.ndim == 4 and slope.shape[0] == 1 and slope.shape[2:] == (1, 1):
            slope = slope.reshape(slope.shape[1:])
        name = index.add_const(f"{add.name}/slope", slope)
        _replace(proto, add, helper.make_node("PRelu", [x, name], [add.output[0]],
                                              name=add.name), removed)
        changed += 1
    return changed


def _prelu_parts(index: _Index, add: Any) -> tuple[str, np.ndarray, list[Any]] | None:
    """(x, c, the nodes to remove) when ``add`` is Keras' PReLU, else None."""
    ops = [index.producer.get(name) for name in add.input]
    if any(op is None for op in ops):
        return None
    relu, mul = sorted(ops, key=lambda op: op.op_type != "Relu")
    if relu.op_type != "Relu" or mul.op_type != "Mul":
        return None
    scale = next((index.const(n) for n in mul.input if index.const(n) is not None), None)
    inner = next((index.producer.get(n) for n in mul.input if index.const(n) is None), None)
    neg = index.producer.get(inner.input[0]) if inner is not None else None
    if (scale is None or inner.op_type != "Relu" or neg is None or neg.op_type != "Neg"
            or neg.input[0] != relu.input[0]):
        return None
    private = [index.only_user(n.output[0]) for n in (relu, mul, inner, neg)]
    if private[:2] != [add, add] or private[2] is not mul or private[3] is not inner:
        return None
    return relu.input[0], scale, [relu, mul, inner, neg]


def _unshared_gemms(proto: Any) -> int:
    """A ``Gemm(a, b, c)`` beside a ``MatMul(a, b)`` of the same inputs computes the
    product twice: onnxruntime's optimiser fuses ``MatMul + Add`` into a Gemm even when
    the MatMul's output has other readers (MobileNet V3's hidden dense layer before
    hard-swish: ``x * relu6(x + 3)``). The Gemm becomes ``Add(MatMul, c)`` again."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    products = {tuple(n.input[:2]): n for n in proto.graph.node if n.op_type == "MatMul"}
    changed = 0
    for gemm in list(proto.graph.node):
        matmul = products.get(tuple(gemm.input[:2])) if gemm.op_type == "Gemm" else None
        if (matmul is None or len(gemm.input) != 3 or _attr(gemm, "transA", 0)
                or _attr(gemm, "transB", 0) or _attr(gemm, "alpha", 1.0) != 1.0
                or _attr(gemm, "beta", 1.0) != 1.0):
            continue
        _replace(proto, gemm, helper.make_node("Add", [matmul.output[0], gemm.input[2]],
                                               list(gemm.output), name=gemm.name), [])
        changed += 1
    return changed


def _unused_initializers(proto: Any) -> int:
    """Constants no node reads any more (left by the rewrites above)."""
    read = {name for node in proto.graph.node for name in node.input}
    read |= {o.name for o in proto.graph.output}
    unused = [init for init in proto.graph.initializer if init.name not in read]
    for init in unused:
        proto.graph.initializer.remove(init)
    return len(unused)


def _pads_into_pools(proto: Any) -> int:
    """A constant zero spatial ``Pad`` whose only user is a pool, moved into the pool."""
    index, dropped = _Index(proto.graph), []
    for pad in proto.graph.node:
        pool = index.only_user(pad.output[0]) if pad.op_type == "Pad" else None
        pads = index.const(pad.input[1]) if pool is not None else None
        if pads is None or not _foldable(index, pad, pool, pads):
            continue
        begin, end = pads[2:4], pads[6:8]
        own = list(_attr(pool, "pads", [0, 0, 0, 0]))
        _set_attr(pool, "pads", [int(v) for v in (own[0] + begin[0], own[1] + begin[1],
                                                   own[2] + end[0], own[3] + end[1])])
        if pool.op_type == "AveragePool":
            _set_attr(pool, "count_include_pad", 1)
        pool.input[0] = pad.input[0]
        dropped.append(pad)
    for node in dropped:
        proto.graph.node.remove(node)
    return len(dropped)


def _foldable(index: _Index, pad: Any, pool: Any, pads: np.ndarray) -> bool:
    value = index.const(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
    plain = (pads.shape == (8,) and not pads[[0, 1, 4, 5]].any() and (pads >= 0).all()
             and _attr(pad, "mode", b"constant") in (b"constant", "constant")
             and value is not None and not np.asarray(value).any()
             and (len(pad.input) < 4 or not pad.input[3]))
    if not plain or _attr(pool, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False
    if pool.op_type == "AveragePool":
        return _attr(pool, "count_include_pad", 0) == 1 or not any(_attr(pool, "pads", []))
    return pool.op_type == "MaxPool" and _non_negative(index, pad.input[0])


def _non_negative(index: _Index, tensor: str, depth: int = 4) -> bool:
    """Whether ``tensor`` is never negative: a ReLU's output, or a concat or max pool of
    such outputs (looked through ``depth`` ops at most)."""
    node = index.producer.get(tensor)
    if node is None or depth == 0:
        return False
    if node.op_type in NON_NEGATIVE:
        return True
    return node.op_type in {"Concat", "MaxPool"} and all(
        _non_negative(index, name, depth - 1) for name in node.input)


def _hard_activations(proto: Any) -> int:
    """``Clip(x + 3, 0, 6) * (1/6)`` becomes ``HardSigmoid(x)`` (alpha 1/6, beta 0.5) and
    ``x * HardSigmoid(x)`` then ``HardSwish(x)`` (MobileNetV3's h-sigmoid and h-swish,
    Howard et al. 2019), one op each, as onnxruntime's CPU kernels run them."""
    from onnx import helper  # heavy: onnx loads only when a graph is rewritten

    index, changed = _Index(proto.graph), 0
    for mul in list(proto.graph.node):
        parts = _hard_sigmoid_parts(index, mul) if mul.op_type == "Mul" else None
        if parts is None:
            continue
        x, removed = parts
        _replace(proto, mul, helper.make_node("HardSigmoid", [x], [mul.output[0]],
                                              name=mul.name, alpha=1 / 6, beta=0.5), removed)
        changed += 1
    index = _Index(proto.graph)
    for mul in list(proto.graph.node):
        gate = [index.producer.get(n) for n in mul.input] if mul.op_type == "Mul" else []
        sigmoid = next((g for g in gate if g is not None and g.op_type == "HardSigmoid"), None)
        if sigmoid is None or sigmoid.input[0] not in mul.input or \
                index.only_user(sigmoid.output[0]) is not mul:
            continue
        _replace(proto, mul, helper.make_node("HardSwish", [sigmoid.input[0]], [mul.output[0]],
                                              name=mul.name), [sigmoid])
        changed += 1
    return changed


def _hard_sigmoid_parts(index: _Index, mul: Any) -> tuple[str, list[Any]] | None:
    """(x, the Add and Clip to remove) when ``mul`` ends ``Clip(x + 3, 0, 6) / 6``."""
    sixth = next((index.const(n) for n in mul.input if index.const(n) is not None), None)
    clip = next((index.producer.get(n) for n in mul.input if index.const(n) is None), None)
    if sixth is None or clip is None or clip.op_type != "Clip" or len(clip.input) != 3:
        return None
    add = index.producer.get(clip.input[0])
    bounds = [index.const(n) for n in clip.input[1:]]
    if add is None or add.op_type != "Add" or any(b is None for b in bounds):
        return None
    three = next((index.const(n) for n in add.input if index.const(n) is not None), None)
    x = next((n for n in add.input if index.const(n) is None), None)
    exact = (three is not None and x is not None and np.allclose(three, 3.0)
             and np.allclose(bounds[0], 0.0) and np.allclose(bounds[1], 6.0)
             and np.allclose(sixth, 1 / 6, rtol=1e-6))
    private = index.only_user(add.output[0]) is clip and index.only_user(clip.output[0]) is mul
    return (x, [clip, add]) if exact and private else None


#: Fusions run only for targets whose runtime has the fused ops (see
#: :func:`fuses_hard_activations`).
#: Rewrites for onnxruntime's CPU EP on a PC, taken together with fused hard
#: activations (one target choice): CoreML's ML program EP splits a Gather-shuffled
#: graph into 17 partitions, so phones keep the Reshape/Transpose shuffle.
FUSIONS: tuple[GraphPass, ...] = (GraphPass("hard-activations", _hard_activations),
                                  GraphPass("shuffle-as-gather", _shuffles_as_gathers),
                                  GraphPass("unused-initializers-again", _unused_initializers))
#: CPU architectures whose ONNX runtime is onnxruntime's CPU EP (a PC): it runs
#: ``HardSwish``/``HardSigmoid`` natively. Phones (ARM) keep the decomposed form, which
#: onnxruntime's NNAPI EP takes in one partition (it has no HardSwish).
NATIVE_HARD_ACTIVATIONS = frozenset({"x86_64", "amd64", "x86", "i686"})


def fuses_hard_activations(arch: str) -> bool:
    """Whether ONNX exports for ``arch`` get fused HardSwish/HardSigmoid."""
    return arch.lower() in NATIVE_HARD_ACTIVATIONS


#: Passes that can lose as well as win (tried both ways, see :func:`lean`).
OPTIONAL = ("reshapes-as-transposes",)
PASSES: tuple[GraphPass, ...] = (
    GraphPass("reshapes-as-transposes", _reshapes_as_transposes),
    GraphPass("shuffle-in-nchw", _shuffles_in_nchw),
    GraphPass("portable-optimise", _portable_optimise),
    GraphPass("grouped-convs", _grouped_convs),
    GraphPass("strided-convs", _strided_convs),
    GraphPass("flatten-in-nchw", _flattens_in_nchw),
    GraphPass("portable-optimise-again", _portable_optimise),
    GraphPass("unshared-gemms", _unshared_gemms),
    GraphPass("unit-transposes", _unit_transposes_as_reshapes),
    GraphPass("reshape-chains", _collapse_reshape_chains),
    GraphPass("identity-reshapes", _drop_identity_reshapes),
    GraphPass("prelu", _prelus),
    GraphPass("pad-into-pool", _pads_into_pools),
    GraphPass("unused-initializers", _unused_initializers),
)


def lean(proto: Any, *, fuse_hard_activations: bool = False) -> dict[str, int]:
    """Run :data:`PASSES` on ``proto`` in place, with and without the optional ones,
    keeping the leaner graph (fewer nodes, then fewer Transposes), then the
    :data:`FUSIONS` if asked; how many places each pass changed."""
    best: tuple[tuple[int, int], Any, dict[str, int]] | None = None
    for skip in ((), OPTIONAL):
        trial = type(proto)()
        trial.CopyFrom(proto)
        counts = {step.name: step.run(trial) for step in PASSES if step.name not in skip}
        transposes = sum(node.op_type == "Transpose" for node in trial.graph.node)
        key = (len(trial.graph.node), transposes)
        if best is None or key < best[0]:
            best = (key, trial, counts)
    proto.CopyFrom(best[1])
    fusions = {step.name: step.run(proto) for step in FUSIONS if fuse_hard_activations}
    return {**best[2], **fusions}
