"""Structured filter pruning that really removes channels from a Keras model.

Filters are ranked per prunable layer by the L1 norm of their weights (Li et al.,
"Pruning Filters for Efficient ConvNets", ICLR 2017) or by their distance to the
layer's geometric median, the most replaceable filters going first (FPGM: He et al.,
"Filter Pruning via Geometric Median", CVPR 2019). A narrower model is then built
from the same config with the same layer names, and the kept weights are copied
through every layer that consumes those channels.

Channels are tracked through the functional graph as *channel spaces*:

- a convolution (``groups=1``, or separable with depth multiplier 1) opens a new
  space; its filters are what is pruned;
- channel-preserving layers (batch norm, activations, depthwise convs, pooling,
  padding, dropout) pass their input's space on;
- an element-wise merge (``Add``, ``Multiply``...) ties its inputs' spaces into one:
  residual branches and squeeze-excite gates are pruned together or not at all;
- a channel ``Concatenate`` joins its inputs' spaces in order (each part pruned on
  its own, the consumer sees the kept channels of every part);
- a ``Dense`` layer reads the kept rows of its input; its own units stay;
- anything else (grouped convs, channel shuffle/split, reshapes, custom layers) is a
  barrier: the spaces it reads stay whole, and the report says which layer kept them.

Kept counts are rounded up to a multiple of ``divisor`` (8 by default, as MobileNet
V2's width multiplier rounds channels, Sandler et al. 2018), which mobile kernels
vectorise over.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError

PRESERVING = {"BatchNormalization", "ReLU", "Activation", "PReLU", "LeakyReLU", "ELU",
              "Softmax", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
              "GlobalMaxPooling2D", "Dropout", "SpatialDropout2D", "ZeroPadding2D",
              "Identity", "UpSampling2D", "Cropping2D", "DepthwiseConv2D"}
MERGES = {"Add", "Multiply", "Subtract", "Maximum", "Minimum", "Average"}
DIVISOR = 8


class Method(StrEnum):
    """How weights are chosen for removal: whole filters ranked by their L1 norm or by
    FPGM (this module), or single weights by magnitude (:mod:`quant.sparsity`)."""

    L1 = "l1"
    FPGM = "fpgm"
    MAGNITUDE = "magnitude"

    @property
    def structured(self) -> bool:
        """Whether whole filters go (the model gets narrower)."""
        return self != Method.MAGNITUDE


@dataclass
class _Space:
    """One set of channels; ``parts`` is set for a concatenation of spaces."""

    channels: int
    producers: list[str] = field(default_factory=list)  # convs whose filters these are
    parts: list[int] = field(default_factory=list)
    whole: str | None = None  # why it cannot be pruned


@dataclass(frozen=True)
class Group:
    """Channels pruned together: the filters of ``producers`` (tied by merges)."""

    producers: tuple[str, ...]
    channels: int
    kept: tuple[int, ...] = ()  # indices of the kept channels (empty: not pruned)


@dataclass(frozen=True)
class Plan:
    """What pruning does to a model: the pruned groups and the layers left whole."""

    groups: tuple[Group, ...]
    left_whole: Mapping[str, str]  # conv layer -> why its filters stay


class _Graph:
    """Channel spaces of a functional model's config, joined by union-find."""

    def __init__(self, model: Any) -> None:
        self.config = model.get_config()
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        self.out: dict[str, int] = {}  # layer -> the space of its output
        self.reads: dict[str, list[int]] = {}  # layer -> the spaces of its inputs
        channels = {layer.name: _channels(layer) for layer in model.layers}
        for layer in self.config["layers"]:
            self._add(layer, channels.get(layer["name"]))
        for name, *_ in _outputs(self.config):
            self.keep_whole(self.out[name], f"the model's output ({name})")

    def new(self, channels: int, **kw: Any) -> int:
        self.spaces.append(_Space(channels, **kw))
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            sa, sb = self.spaces[a], self.spaces[b]
            if sa.parts or sb.parts:
                reason = "a concatenation merged element-wise"
                self.keep_whole(a, reason)
                self.keep_whole(b, reason)
            self.parent[b] = a
            sa.producers += sb.producers
            sa.whole = sa.whole or sb.whole
            sa.parts = sa.parts or sb.parts
        return a

    def keep_whole(self, i: int, reason: str) -> None:
        space = self.spaces[self.find(i)]
        space.whole = space.whole or reason
        for part in space.parts:
            self.keep_whole(part, reason)

    def _add(self, layer: dict[str, Any], channels: int | None) -> None:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        inputs = [self.out[n] for n in inbound_layers(layer)]
        self.reads[name] = inputs
        if kind == "InputLayer":
            self.out[name] = self.new(channels or 0, whole="the model's input")
        elif (kind == "Conv2D" and config.get("groups", 1) == 1
              or kind == "SeparableConv2D" and config.get("depth_multiplier", 1) == 1) \
                and len(inputs) == 1:
            self.out[name] = self.new(channels or 0, producers=[name])
        elif kind == "Dense" and len(inputs) == 1:  # reads the kept rows; its units stay
            self.out[name] = self.new(channels or 0, whole=f"it is the units of {name} (Dense)")
        elif kind in PRESERVING and len(inputs) == 1 and config.get("depth_multiplier", 1) == 1:
            self.out[name] = inputs[0]
        elif kind in MERGES and inputs:
            root = inputs[0]
            for other in inputs[1:]:
                root = self.union(root, other)
            self.out[name] = root
        elif kind == "Concatenate" and config.get("axis", -1) in (-1, 3):
            self.out[name] = self.new(channels or 0, parts=[self.find(i) for i in inputs])
        else:
            reason = f"it feeds {name} ({kind})"
            for i in inputs:
                self.keep_whole(i, reason)
            self.out[name] = self.new(channels or 0, whole=f"it comes from {name} ({kind})")
            if len(layer.get("inbound_nodes", [])) > 1:
                raise UserError(f"prune: layer {name} is called more than once (a shared "
                                "layer); prune supports each layer used once")

    def roots(self) -> Iterator[tuple[int, _Space]]:
        for i in range(len(self.spaces)):
            if self.find(i) == i:
                yield i, self.spaces[i]


def _channels(layer: Any) -> int | None:
    shape = getattr(getattr(layer, "output", None), "shape", None)
    return shape[-1] if shape and isinstance(shape[-1], int) else None


def _tensors(value: Any) -> Iterator[list[Any]]:
    """Every keras_history of a config's args, in order."""
    if isinstance(value, dict):
        if "keras_history" in value.get("config", {}):
            yield value["config"]["keras_history"]
            return
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def inbound_layers(layer: dict[str, Any]) -> list[str]:
    """The names of the layers a functional config entry reads, in order."""
    return [history[0] for node in layer.get("inbound_nodes", [])
            for history in _tensors(node.get("args", []))]


def _outputs(config: dict[str, Any]) -> list[list[Any]]:
    outputs = config["output_layers"]
    return [outputs] if outputs and isinstance(outputs[0], str) else outputs


def plan(model: Any, *, method: Method, ratio: float | Mapping[str, float],
         divisor: int = DIVISOR) -> Plan:
    """Which filters to keep: ``ratio`` of each group's filters removed (a mapping gives
    a ratio per producing layer; a group takes the largest of its layers'), ranked
    over the group's producers together."""
    if not method.structured:
        raise ValueError(f"plan ranks filters; {method} pruning is quant.sparsity's")
    graph = _Graph(model)
    weights = {layer.name: layer for layer in model.layers}
    groups, whole = [], {}
    for _, space in graph.roots():
        if not space.producers:
            continue
        if space.whole:
            whole.update({p: space.whole for p in space.producers})
            continue
        share = _ratio_of(space.producers, ratio)
        keep = _kept_count(space.channels, share, divisor)
        if share <= 0 or keep >= space.channels:
            whole.update({p: f"{space.channels} filters: nothing to remove at this ratio"
                          for p in space.producers})
            continue
        scores = sum(_scores(_kernel(weights[p]), method) for p in space.producers)
        kept = np.sort(np.argsort(-scores, kind="stable")[:keep])
        groups.append(Group(tuple(space.producers), space.channels, tuple(int(i) for i in kept)))
    if not groups:
        raise UserError(f"prune: {model.name} has no prunable layer"
                        + (f" ({_first(whole)})" if whole else " (no Conv2D with groups=1)"))
    return Plan(tuple(groups), dict(sorted(whole.items())))


def _kernel(layer: Any) -> np.ndarray:
    """The kernel whose last axis is the layer's filters (a separable conv's pointwise)."""
    weights = layer.get_weights()
    return weights[1] if type(layer).__name__ == "SeparableConv2D" else weights[0]


def _first(whole: Mapping[str, str]) -> str:
    name, reason = next(iter(whole.items()))
    return f"{name}: left whole because {reason}"


def _ratio_of(producers: list[str], ratio: float | Mapping[str, float]) -> float:
    if isinstance(ratio, Mapping):
        return max(float(ratio.get(p, 0.0)) for p in producers)
    return float(ratio)


def _kept_count(channels: int, ratio: float, divisor: int) -> int:
    """Channels kept: ``(1 - ratio)`` of them rounded up to a multiple of ``divisor``."""
    want = max(1, int(np.ceil(channels * (1 - ratio))))
    return min(channels, -(-want // divisor) * divisor) if channels > divisor else want


def _scores(kernel: np.ndarray, method: Method) -> np.ndarray:
    """Importance of each output filter of a conv kernel (H, W, in, out), normalised to
    mean 1 so that tied layers weigh alike; the lowest go first."""
    filters = kernel.reshape(-1, kernel.shape[-1]).T.astype(np.float64)
    if method == Method.L1:
        score = np.abs(filters).sum(axis=1)
    else:  # FPGM: total distance to the others; near the geometric median = replaceable
        gram = filters @ filters.T
        norms = np.diag(gram)
        dist = np.sqrt(np.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0.0))
        score = dist.sum(axis=1)
    mean = score.mean()
    return score / mean if mean > 0 else score


def apply(model: Any, pruned: Plan) -> Any:
    """A narrower model with the same layer names and the kept weights."""
    import keras  # heavy: only when a model is pruned

    graph = _Graph(model)
    kept = _kept_by_space(graph, pruned)
    config = copy.deepcopy(graph.config)
    narrower = {p: len(g.kept) for g in pruned.groups for p in g.producers}
    for layer in config["layers"]:
        layer.pop("build_config", None)  # shapes change: the layers build from their inputs
        if layer["name"] in narrower:
            layer["config"]["filters"] = narrower[layer["name"]]
    thinner = keras.Model.from_config(config)
    for layer in thinner.layers:
        source = model.get_layer(layer.name)
        reads = [kept.get(graph.find(i)) for i in graph.reads[layer.name]]
        own = kept.get(graph.find(graph.out[layer.name]))
        layer.set_weights(_sliced(source, reads[0] if reads else None, own))
    return thinner


def _kept_by_space(graph: _Graph, pruned: Plan) -> dict[int, np.ndarray]:
    """The kept channel indices of every pruned space and every concatenation of them."""
    by_producer = {p: np.asarray(g.kept) for g in pruned.groups for p in g.producers}
    kept: dict[int, np.ndarray] = {}
    for i, space in graph.roots():
        if space.producers and space.producers[0] in by_producer:
            kept[i] = by_producer[space.producers[0]]
    for i, space in graph.roots():
        if space.parts and any(graph.find(p) in kept for p in space.parts):
            pieces, offset = [], 0
            for part in space.parts:
                whole = graph.spaces[graph.find(part)].channels
                pieces.append(kept.get(graph.find(part), np.arange(whole)) + offset)
                offset += whole
            kept[i] = np.concatenate(pieces)
    return kept


def _sliced(layer: Any, read: np.ndarray | None, own: np.ndarray | None) -> list[np.ndarray]:
    """``layer``'s weights with the kept input channels (``read``) and, for a conv, the
    kept filters (``own``); per-channel layers keep the channels of their space."""
    kind, weights = type(layer).__name__, layer.get_weights()
    if not weights or read is None and own is None:
        return weights
    if kind == "Conv2D":
        kernel = weights[0] if read is None else weights[0][:, :, read, :]
        kernel = kernel if own is None else kernel[..., own]
        return [kernel, *([] if len(weights) == 1 else [weights[1] if own is None else weights[1][own]])]
    if kind == "SeparableConv2D":  # depthwise (H, W, in, 1), pointwise (1, 1, in, out), bias
        depth, point = weights[0], weights[1]
        if read is not None:
            depth, point = depth[:, :, read, :], point[:, :, read, :]
        point = point if own is None else point[..., own]
        rest = [w if own is None else w[own] for w in weights[2:]]
        return [depth, point, *rest]
    if kind == "Dense":
        return [weights[0] if read is None else weights[0][read], *weights[1:]]
    if kind == "DepthwiseConv2D":
        return [weights[0][:, :, own, :], *(w[own] for w in weights[1:])]
    if kind in ("BatchNormalization",):
        return [w[own] for w in weights]
    if kind == "PReLU":
        return [w[..., own] for w in weights]
    return weights
