"""NASNet-A Mobile (Zoph, Vasudevan, Shlens & Le 2018, "Learning Transferable
Architectures for Scalable Image Recognition", arXiv:1707.07012, Fig. 4 and Table 2).

The searched network repeats two cells. Every cell takes the two previous hidden
states: the current one ``h`` (after a ReLU + 1x1 conv + BN) and the one before it
``p`` (brought to ``h``'s size: a factorized reduction when it is larger, a 1x1 conv
when its width differs). A cell is five blocks; each block applies one operation to
each of two inputs and adds them. A normal cell keeps the size and concatenates its
unused states (``p`` and all five blocks, 6 x filters); a reduction cell halves it
(operations on the cell's inputs have stride 2) and concatenates blocks 2-5.

The network is a 3x3 stride-2 stem conv, two reduction cells at 1/4 and 1/2 of the
filters, then three stacks of ``cell_repeats`` normal cells (N in "N @ penultimate
filters"), a reduction cell doubling the filters between them, ReLU, pooling and the
classifier. NASNet-A Mobile is 4 @ 1056. Its many small branches are what ShuffleNet
V2's guideline G3 (Ma et al. 2018, arXiv:1807.11164) calls fragmentation: on par in
MACs with MobileNet V2 1.4, it runs as many more, smaller kernels.

Layer names: ``stem.conv``, ``stem.reduce1``/``stem.reduce2`` (the stem cells), then
``cell1`` ... ``cell14``, each ``cellC.normal`` or ``cellC.reduce`` with ``.adjust``
(``p``'s path), ``.input`` (``h``'s 1x1 conv), ``.blockB.left.sep5x5`` and so on, and
``.concat``.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import classifier, common_knobs, finish, image_input, keras_twin
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Zoph et al. 2018, NASNet, arXiv:1707.07012 (Fig. 4, Table 2)"
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.9997
STEM_FILTERS = 32
FILTER_MULTIPLIER = 2  # filters double at every reduction cell

# A block: (left op, left input, right op, right input); inputs are "h" (the cell's
# current state), "p" (the previous one) or "bK" (block K of this cell). In a
# reduction cell an op applied to "h" or "p" has stride 2.
Block = tuple[str, str, str, str]
NORMAL: tuple[Block, ...] = (
    ("sep5x5", "h", "sep3x3", "p"),
    ("sep5x5", "p", "sep3x3", "p"),
    ("avg3x3", "h", "identity", "p"),
    ("avg3x3", "p", "avg3x3", "p"),
    ("sep3x3", "h", "identity", "h"),
)
NORMAL_CONCAT = ("p", "b1", "b2", "b3", "b4", "b5")
REDUCTION: tuple[Block, ...] = (
    ("sep5x5", "h", "sep7x7", "p"),
    ("max3x3", "h", "sep7x7", "p"),
    ("avg3x3", "h", "sep5x5", "p"),
    ("avg3x3", "b1", "identity", "b2"),
    ("sep3x3", "b1", "max3x3", "h"),
)
REDUCTION_CONCAT = ("b2", "b3", "b4", "b5")

KNOBS = (
    Knob("cell_repeats", int, 4, minimum=1, maximum=8, short="n",
         help="N: normal cells per stack (NASNet-A Mobile: 4)"),
    Knob("penultimate_filters", int, 1056, minimum=96, maximum=4032, step=96, short="f",
         help="width of the last cell's output (NASNet-A Mobile: 1056)"),
    *common_knobs(resolution=224),
)


class SharedOps:
    """Parameter-free ops (ReLU, pooling) made once per input and settings, named where
    first needed. NASNet applies the same one several times to one state: a ReLU before
    every separable op of ``h`` (and the next cell's ``adjust``), ``avg3x3(p)`` twice in
    block 4 of a normal cell, ``max3x3(h)`` in blocks 2 and 5 of a reduction cell.
    Computing each once is the same network with fewer ops, and leaves no identical ops
    for an exporter to merge under a name it picks at random (tf2onnx does)."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, str, int], keras.KerasTensor] = {}

    def relu(self, x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
        return self._once(x, "relu", 1, lambda: layers.ReLU(name=name))

    def pool(self, x: keras.KerasTensor, op: str, *, strides: int, name: str) -> keras.KerasTensor:
        kind = layers.AveragePooling2D if op.startswith("avg") else layers.MaxPooling2D
        return self._once(x, op, strides, lambda: kind(int(op[3]), strides=strides,
                                                       padding="same", name=name))

    def _once(self, x: keras.KerasTensor, op: str, strides: int, make) -> keras.KerasTensor:
        key = (id(x), op, strides)
        if key not in self._made:
            self._made[key] = make()(x)
        return self._made[key]


def _bn(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def separable(x: keras.KerasTensor, filters: int, kernel: int, *, strides: int,
              shared: SharedOps, name: str) -> keras.KerasTensor:
    """NASNet's separable operation: (ReLU, separable conv, BN) twice, the first
    strided (``name.act1/.conv1/.bn1/.act2/.conv2/.bn2``; ``act1`` is shared when
    another op of the same input made it first)."""
    for i, stride in ((1, strides), (2, 1)):
        x = shared.relu(x, name=f"{name}.act{i}")
        x = layers.SeparableConv2D(filters, kernel, strides=stride, padding="same",
                                   use_bias=False, name=f"{name}.conv{i}")(x)
        x = _bn(x, f"{name}.bn{i}")
    return x


def operation(x: keras.KerasTensor, op: str, filters: int, *, strides: int,
              shared: SharedOps, name: str) -> keras.KerasTensor:
    """One block operation of the cell tables, named ``name.<op>``."""
    if op == "identity":
        return x
    if op.startswith("sep"):
        return separable(x, filters, int(op[3]), strides=strides, shared=shared,
                         name=f"{name}.{op}")
    return shared.pool(x, op, strides=strides, name=f"{name}.{op}")


def adjust(p: keras.KerasTensor, h: keras.KerasTensor, filters: int, *,
           shared: SharedOps, name: str) -> keras.KerasTensor:
    """Bring the previous state ``p`` to ``h``'s size: a factorized reduction (two
    1x1 stride-2 convs, the second on the input shifted by one pixel, concatenated)
    when it is larger, a 1x1 conv when only its width differs (``name.adjust``)."""
    name = f"{name}.adjust"
    if p.shape[1] != h.shape[1]:
        p = shared.relu(p, name=f"{name}.act")
        shifted = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}.pad")(p)
        shifted = layers.Cropping2D(((1, 0), (1, 0)), name=f"{name}.crop")(shifted)
        paths = [layers.Conv2D(filters // 2, 1, strides=2, use_bias=False,
                               name=f"{name}.path{i}.conv")(x)
                 for i, x in enumerate((p, shifted), start=1)]
        return _bn(layers.Concatenate(name=f"{name}.concat")(paths), f"{name}.bn")
    if p.shape[-1] != filters:
        p = shared.relu(p, name=f"{name}.act")
        p = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}.conv")(p)
        return _bn(p, f"{name}.bn")
    return p


def cell(h: keras.KerasTensor, p: keras.KerasTensor | None, filters: int, *,
         reduction: bool, shared: SharedOps, name: str) -> keras.KerasTensor:
    """A normal or reduction cell from its table; returns the concatenated output."""
    blocks, concat = (REDUCTION, REDUCTION_CONCAT) if reduction else (NORMAL, NORMAL_CONCAT)
    # The first stem cell has no previous state: its "p" is its raw input, unadjusted.
    states = {"p": h if p is None else adjust(p, h, filters, shared=shared, name=name)}
    x = shared.relu(h, name=f"{name}.input.act")
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}.input.conv")(x)
    states["h"] = _bn(x, f"{name}.input.bn")
    for b, (left, left_in, right, right_in) in enumerate(blocks, start=1):
        pair = []
        for side, op, source in (("left", left, left_in), ("right", right, right_in)):
            strides = 2 if reduction and source in ("h", "p") else 1
            pair.append(operation(states[source], op, filters, strides=strides, shared=shared,
                                  name=f"{name}.block{b}.{side}"))
        states[f"b{b}"] = layers.Add(name=f"{name}.block{b}.add")(pair)
    return layers.Concatenate(name=f"{name}.concat")([states[s] for s in concat])


@register_model(
    name="nasnet_mobile", family="nasnet", knobs=KNOBS, paper=PAPER,
    figures=(PaperFigure((), 564, 5.3, source=PAPER + " Table 2 (NASNet-A 4 @ 1056)"),),
    keras_twin=keras_twin("NASNetMobile"),
    description="searched normal/reduction cells (fragmented: ShuffleNet V2's G3)",
)
def nasnet_mobile(*, cell_repeats: int, penultimate_filters: int, resolution: int,
                  num_classes: int, include_top: bool, dropout: float) -> keras.Model:
    """Build NASNet-A ``cell_repeats @ penultimate_filters`` (Mobile: 4 @ 1056)."""
    filters = penultimate_filters // 24  # the last normal cell concatenates 6 x 4 x this
    inputs = image_input(resolution)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, use_bias=False, name="stem.conv")(inputs)
    x = _bn(x, "stem.bn")
    prev, shared = None, SharedOps()
    for i, width in enumerate((filters // FILTER_MULTIPLIER ** 2, filters // FILTER_MULTIPLIER), 1):
        x, prev = cell(x, prev, width, reduction=True, shared=shared, name=f"stem.reduce{i}"), x
    index = 0
    for stack in range(3):
        width = filters * FILTER_MULTIPLIER ** stack
        if stack:
            index += 1
            x, prev = cell(x, prev, width, reduction=True, shared=shared,
                           name=f"cell{index}.reduce"), x
        for _ in range(cell_repeats):
            index += 1
            x, prev = cell(x, prev, width, reduction=False, shared=shared,
                           name=f"cell{index}.normal"), x
    x = shared.relu(x, name="head.act")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="nasnet_mobile")
