"""The FLOPs proxy's results, whatever graph they were read from: a Keras model
(:mod:`models_keras.analysis`), a TFLite flatbuffer or an ONNX graph
(:mod:`device_profiles.tflite_cost`, :mod:`device_profiles.onnx_cost`).

MACs are counted as the papers count them: the multiply-accumulates of convolutions
(grouped, depthwise, separable) and dense layers, one per weight use. Element-wise work
(batch norm, activations, adds, multiplies, pooling) has its own column. Memory access
cost follows ShuffleNet V2 (Ma et al. 2018, arXiv:1807.11164, Sec. 2): the input and
output feature maps plus the weights each layer touches. Sizes are for a batch of one.
An op whose cost is unknown is listed in :attr:`ModelCost.unknown`, never counted as
zero silently: the totals are then lower bounds.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

Shape = tuple[int, ...]


def prod(shape: Iterable[int | None]) -> int:
    """Elements of a shape (unknown dimensions count as 1; a scalar's ``()`` is 1)."""
    return math.prod(1 if d is None else int(d) for d in shape)


def shape_from_text(text: str) -> Shape | None:
    """``"1,224,224,3"`` -> ``(1, 224, 224, 3)``; None unless every part is a positive
    integer (the ``--input-shape`` flags say what is allowed)."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        return None
    return shape if shape and all(d > 0 for d in shape) else None


@dataclass(frozen=True)
class LayerCost:
    """The cost of one layer or op; ``*_elems`` count tensor elements, not bytes.

    Attributes:
        kind: the layer class (Keras) or op type (``CONV_2D``, ``Conv``).
        known: False when the proxy has no rule for ``kind`` (MACs and element-wise
            work are then 0 in this row and the totals are lower bounds).
    """

    name: str
    kind: str
    output_shape: Shape
    macs: int
    elementwise: int
    params: int
    trainable_params: int
    input_elems: int
    output_elems: int
    known: bool = True

    def memory_access_bytes(self, element_bytes: int) -> int:
        """Bytes read and written: input + output feature maps + weights.

        The model input is data the caller provides, not traffic of a layer: zero.
        """
        if self.kind == "InputLayer":
            return 0
        return (self.input_elems + self.output_elems + self.params) * element_bytes


@dataclass(frozen=True)
class ModelCost:
    """Per-layer costs and whole-model totals.

    Attributes:
        weight_bytes: stored weight bytes by dtype (``(("int8", 3_200_000), ...)``)
            for a model file; empty for a Keras model.
        source: what the figures were read from (``keras``, ``tflite``, ``onnx``).
        input_shape: the (first) input's shape without the batch dimension.
    """

    name: str
    layers: tuple[LayerCost, ...]
    params: int
    trainable_params: int
    peak_activation_elems: int
    weight_bytes: tuple[tuple[str, int], ...] = ()
    source: str = "keras"
    input_shape: Shape = ()

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def elementwise(self) -> int:
        return sum(layer.elementwise for layer in self.layers)

    @property
    def unknown(self) -> tuple[tuple[str, int], ...]:
        """Op types without a cost rule and how many of each, sorted by name."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            if not layer.known:
                counts[layer.kind] = counts.get(layer.kind, 0) + 1
        return tuple(sorted(counts.items()))

    def memory_access_bytes(self, element_bytes: int) -> int:
        return sum(layer.memory_access_bytes(element_bytes) for layer in self.layers)


@dataclass(frozen=True)
class Step:
    """One op of a graph in run order, by the tensors it reads and writes."""

    reads: tuple[Hashable, ...]
    writes: tuple[Hashable, ...]


def peak_live_elems(steps: Sequence[Step], sizes: dict[Hashable, int],
                    outputs: Iterable[Hashable]) -> int:
    """Largest sum of live tensors while running ``steps`` in order.

    A tensor lives from the step that writes it to its last reader (graph outputs to
    the end); tensors no step writes (inputs, weights) are not counted. No in-place
    reuse is assumed: an upper bound of what a runtime's arena planner needs.
    """
    last_use: dict[Hashable, int] = {}
    for index, step in enumerate(steps):
        for tensor in step.reads:
            last_use[tensor] = index
    for tensor in outputs:
        last_use[tensor] = len(steps)
    live: set[Hashable] = set()
    peak = 0
    for index, step in enumerate(steps):
        live.update(step.writes)
        peak = max(peak, sum(sizes.get(t, 0) for t in live))
        live = {t for t in live if last_use.get(t, index) > index}
    return peak
