"""Which Keras layers an op of an exported file came from (the names converters leave
in the file: :func:`mobilectl.core.names.layers_in`), and which ops of the file a
runtime's profiled node stands for. An op with no layer scope in its names (a model
output, ``tfl.quantize``) maps to no layer and is listed as unmapped.

Batch norm folded into a convolution leaves the conv's node named after its bn (or,
once onnxruntime fuses the activation, its act): a conv-type op naming ``P.bn`` or
``P.act`` also stands for ``P.bn`` (when the file has that layer) and ``P.conv`` (when
a bn was folded, or the file has that layer), the ``name.conv/.bn/.act`` naming of
:func:`models_keras.blocks.conv_bn`.
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mobilectl.core.names import common_scopes, layers_in

CONV_KINDS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "Conv", "FusedConv",
                        "QLinearConv", "ConvInteger", "Gemm", "MatMul", "FusedGemm",
                        "QLinearMatMul", "MatMulInteger"})
_FOLDED = ("bn", "act")


def with_folded(kind: str, layers: Sequence[str], known: frozenset[str]) -> tuple[str, ...]:
    """``layers`` plus the conv and bn layers a conv-type op absorbed (see the module
    docstring): the bn when ``known`` (every layer the file names) has it, the conv
    when a bn was folded or ``known`` has it; each block's layers in conv, bn, act
    order."""
    names = list(layers)
    if kind in CONV_KINDS:
        for layer in layers:
            prefix, _, last = layer.rpartition(".")
            if not prefix or last not in _FOLDED:
                continue
            bn = last == "bn" or f"{prefix}.bn" in known  # a conv named after its bn
            names += [f"{prefix}.bn"] * bn
            names += [f"{prefix}.conv"] * (bn or f"{prefix}.conv" in known)
    return _ordered(names)


def _ordered(names: Sequence[str]) -> tuple[str, ...]:
    rank = {"conv": 0, "bn": 1, "act": 2}
    first: dict[str, int] = {}
    for name in names:
        first.setdefault(name.rpartition(".")[0], len(first))
    return tuple(sorted(dict.fromkeys(names), key=lambda n: (
        first[n.rpartition(".")[0]], rank.get(n.rpartition(".")[2], 3))))


@dataclass(frozen=True)
class FileOp:
    """One op of the file: its position, type, name, and the tensors it reads and writes."""

    index: int
    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.outputs)


@dataclass(frozen=True)
class Names:
    """What the file's names say: the model scopes every name starts with, and every
    layer any op mentions."""

    model_scopes: tuple[str, ...]
    layers: frozenset[str]


def known_layers(ops: Iterable[FileOp]) -> Names:
    """The file's model scopes and every layer name any op of the file mentions."""
    ops = list(ops)
    scopes = common_scopes([name for op in ops for name in op.names()])
    return Names(scopes, frozenset(layer for op in ops for name in op.names()
                                   for layer in layers_in(name, model_scopes=scopes)))


def op_layers(op: FileOp, known: Names) -> tuple[str, ...]:
    """The layers one file op stands for."""
    found = tuple(dict.fromkeys(layer for name in op.names()
                                for layer in layers_in(name, model_scopes=known.model_scopes)))
    return with_folded(op.kind, found, known.layers)


#: onnxruntime names a node it makes in place of another (QDQ fusion) ``NAME_token_N``
_TOKEN = re.compile(r"_token_\d+$")


def resolve_onnx(profiled: Sequence[str], ops: Sequence[FileOp]) -> list[tuple[int, ...]]:
    """For each node onnxruntime profiled (its name after the session's optimisations),
    the file ops it stands for: the node of that name, or the producer of the tensor it
    is named after (``X:0_nchwc``). File ops no profiled node names were fused into a
    neighbour: a conv-type op joins the node that reads its output (onnxruntime names
    a conv fused with its activation after the activation), any other op the node
    that wrote its input (element-wise ops fuse into their producer), else the other."""
    by_name = {op.name: op.index for op in ops}
    producer = {out: op.index for op in ops for out in op.outputs}
    groups: list[list[int]] = []
    taken: set[int] = set()
    for name in profiled:
        bare = _TOKEN.sub("", name.removesuffix("_nchwc"))
        index = by_name.get(name, by_name.get(bare, producer.get(bare)))
        groups.append([] if index is None or index in taken else [index])
        taken.update(groups[-1])
    owner = {i: g for g, group in enumerate(groups) for i in group}
    pending = [op for op in ops if op.index not in owner]
    while pending:  # chains of fused ops join one link per pass
        for op in pending:
            _adopt(op, ops, owner, producer)
        left = [op for op in pending if op.index not in owner]
        if len(left) == len(pending):
            break  # the rest touch no profiled node (e.g. constant folding's leftovers)
        pending = left
    for index, g in sorted(owner.items()):
        if index not in groups[g]:
            groups[g].append(index)
    return [tuple(sorted(group)) for group in groups]


def _adopt(op: FileOp, ops: Sequence[FileOp], owner: dict[int, int],
           producer: dict[str, int]) -> None:
    readers = [o.index for o in ops if set(op.outputs) & set(o.inputs) and o.index in owner]
    uses = {t: sum(t in o.inputs for o in ops) for t in op.inputs}
    writers = [producer[t] for t in sorted(op.inputs, key=lambda t: uses[t])
               if t in producer and producer[t] in owner]  # a conv fused with its Add
    for index in ((*readers, *writers) if op.kind in CONV_KINDS else (*writers, *readers)):
        owner[op.index] = owner[index]
        return


def layer_text(layers: Sequence[str]) -> str:
    """Layers of one row, those of one block folded: ``stage2.unit1.dw.{conv,bn,act}``."""
    groups: dict[str, list[str]] = {}
    for layer in layers:
        prefix, _, last = layer.rpartition(".")
        groups.setdefault(prefix, []).append(last)
    parts = []
    for prefix, lasts in groups.items():
        head = f"{prefix}." if prefix else ""
        parts.append(f"{head}{lasts[0]}" if len(lasts) == 1 else f"{head}{{{','.join(lasts)}}}")
    return " + ".join(parts)
