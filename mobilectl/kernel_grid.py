"""The calibration grid: the kernels mobile CNNs are made of, at sampled shapes.

Each :class:`Block` is a small Keras graph built with the zoo's own block builders
(conv + batch norm + activation, depthwise, grouped, squeeze-excite, channel shuffle,
...), so that TF's converter fuses and writes it exactly as it does the zoo's layers
(and :mod:`quant.tflite_forms` rewrites it the same way in int8). Every op of the
converted block is then one kernel to time.

Shapes are sampled, not copied from the zoo: output sides from 1 to 112 pixels and
channels from 8 to 1280 (the ranges of the zoo's layers at 96 to 224 px and width
multipliers 0.25 to 2), drawn with a fixed seed under a MAC and a tensor-size cap,
so the grid is the same on every machine and the zoo's networks are held out whole
(nn-Meter, Zhang et al. 2021, samples its kernel configurations the same way). The
grid is ordered round-robin over block kinds, so a calibration stopped by its time
budget has every kind covered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

SIDES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112)
CHANNELS = (8, 12, 16, 24, 32, 40, 48, 64, 72, 80, 96, 112, 120, 144, 160, 192, 240, 256, 288,
            320, 384, 480, 512, 576, 640, 672, 768, 960, 1024, 1280)
ACTS = ("relu", "relu6", "hard_swish", None)
MAX_MACS = 400e6  # one kernel of the zoo at 224 px stays under this
MAX_ELEMS = 112 * 112 * 144  # the largest activation of the zoo at 224 px
SEED = 20261201


@dataclass(frozen=True)
class Block:
    """One calibration graph: a block kind at one shape (``hw``: the output side)."""

    kind: str
    hw: int
    cin: int
    cout: int
    k: int = 1
    stride: int = 1
    groups: int = 1
    act: str | None = None
    dilation: int = 1

    @property
    def id(self) -> str:
        act = self.act or "linear"
        dilated = f"-d{self.dilation}" if self.dilation > 1 else ""
        return (f"{self.kind}-h{self.hw}-i{self.cin}-o{self.cout}-k{self.k}-s{self.stride}-"
                f"g{self.groups}-{act}{dilated}")

    @property
    def in_hw(self) -> int:
        return self.hw * self.stride


def _conv(x: Any, b: Block) -> Any:
    from models_keras.blocks import conv_bn  # heavy: Keras

    return conv_bn(x, b.cout, b.k, strides=b.stride, groups=b.groups, act=b.act, name="k")


def _depthwise(x: Any, b: Block) -> Any:
    from models_keras.blocks import depthwise_bn  # heavy: Keras

    return depthwise_bn(x, b.k, strides=b.stride, act=b.act, dilation=b.dilation, name="k")


def _strided_dilated(x: Any, b: Block) -> Any:
    """ESPNetv2's down-sampling branch (Mehta et al. 2019): a dilated depthwise conv at
    stride 1, then every second row and column (a STRIDED_SLICE the runtime may not
    delegate)."""
    from models_keras.layers import StridedDilatedDepthwiseConv2D  # heavy: Keras

    return StridedDilatedDepthwiseConv2D(b.k, padding="same", dilation_rate=b.dilation,
                                         use_bias=False, subsample=b.stride, name="k.conv")(x)


def _dense(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    x = layers.GlobalAveragePooling2D(name="k.pool")(x)
    x = layers.Dense(b.cout, name="k.fc")(x)
    return layers.Softmax(name="k.softmax")(x)


def _pool(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    pool = layers.MaxPooling2D if b.act == "max" else layers.AveragePooling2D
    return pool(b.k, strides=b.stride, padding="same", name="k.pool")(x)


def _pair(x: Any, b: Block) -> tuple[Any, Any]:
    from keras import layers  # heavy: Keras

    left = layers.Conv2D(b.cin, 1, name="k.left")(x)
    return left, layers.Conv2D(b.cin, 1, name="k.right")(x)


def _add(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    return layers.Add(name="k.add")(list(_pair(x, b)))


def _concat(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    return layers.Concatenate(name="k.concat")(list(_pair(x, b)))


def _shuffle(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    from models_keras.layers import ChannelShuffle, ChannelSplit  # heavy: Keras

    left, right = ChannelSplit((b.cin // 2, b.cin - b.cin // 2), name="k.split")(x)
    right = layers.ReLU(name="k.relu")(right)
    x = layers.Concatenate(name="k.concat")([left, right])
    return ChannelShuffle(b.groups, name="k.shuffle")(x)


def _squeeze_excite(x: Any, b: Block) -> Any:
    from models_keras.blocks import squeeze_excite  # heavy: Keras

    gate = "sigmoid" if b.act == "sigmoid" else "hard_sigmoid"
    return squeeze_excite(x, reduced=max(8, b.cin // 4), name="k", gate=gate)


def _activation(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    from models_keras.blocks import activation  # heavy: Keras

    if b.act == "leaky":
        return layers.LeakyReLU(0.3, name="k.act")(x)
    return activation(x, b.act, name="k.act")


def _small_activation(x: Any, b: Block) -> Any:
    """An activation of inputs scaled by ``10 ** -k``: in int8 the small scales put
    hard-swish's MULs outside the scales XNNPACK takes (``MUL.ref``, the builtin
    kernel), as in the deep stages of an int8 network."""
    from keras import layers  # heavy: Keras

    x = layers.Rescaling(10.0 ** -b.k, name="k.scale")(x)
    return _activation(x, b)


def _pad(x: Any, b: Block) -> Any:
    from keras import layers  # heavy: Keras

    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="k.pad")(x)
    return layers.Cropping2D(((1, 0), (1, 0)), name="k.crop")(x)


def _pad_pool(x: Any, b: Block) -> Any:
    """Zero padding, then a 3x3 average pool at stride 2: ESPNetv2's image pyramid and
    down-sampling shortcut (Mehta et al. 2019)."""
    from keras import layers  # heavy: Keras

    x = layers.ZeroPadding2D(1, name="k.pad")(x)
    return layers.AveragePooling2D(b.k, strides=b.stride, name="k.pool")(x)


def _unit(x: Any, kind: str, *, cout: int, stride: int, name: str) -> Any:
    """One unit of a chain, built as the zoo builds it."""
    from keras import layers  # heavy: Keras

    from models_keras.blocks import conv_bn, depthwise_bn, squeeze_excite  # heavy: Keras

    act = "hard_swish" if kind.endswith("hs") else "relu6"
    if kind in ("shuffle", "fire", "gshuffle"):
        return _mixing_unit(x, kind, cout=cout, stride=stride, name=name)
    if kind == "conv":
        return conv_bn(x, cout, 3, strides=stride, act="relu", name=name)
    if kind == "dwpw":
        x = depthwise_bn(x, 3, strides=stride, act="relu", name=f"{name}.dw")
        return conv_bn(x, cout, 1, act="relu", name=f"{name}.pw")
    residual = x
    y = conv_bn(x, x.shape[-1] * 4, 1, act=act, name=f"{name}.expand")
    y = depthwise_bn(y, 5 if kind.startswith("se") else 3, strides=stride, act=act, name=f"{name}.dw")
    if kind.startswith("se"):
        y = squeeze_excite(y, reduced=max(8, y.shape[-1] // 4), name=f"{name}.se")
    y = conv_bn(y, cout, 1, act=None, name=f"{name}.project")
    if stride == 1 and cout == residual.shape[-1]:
        y = layers.Add(name=f"{name}.add")([residual, y])
    return y


def _mixing_unit(x: Any, kind: str, *, cout: int, stride: int, name: str) -> Any:
    """The units that split, concatenate and shuffle channels: a channel-split unit
    with a shuffle (Ma et al. 2018), a squeeze-expand unit (Iandola et al. 2016) and a
    grouped-pointwise unit with a shuffle (Zhang et al. 2017)."""
    from keras import layers  # heavy: Keras

    from models_keras.blocks import conv_bn, depthwise_bn  # heavy: Keras
    from models_keras.layers import ChannelShuffle, ChannelSplit  # heavy: Keras

    c = x.shape[-1]
    if kind == "fire":
        s = conv_bn(x, max(8, c // 4), 1, name=f"{name}.squeeze")
        left = conv_bn(s, max(8, cout // 2), 1, name=f"{name}.e1")
        right = conv_bn(s, max(8, cout // 2), 3, strides=stride, name=f"{name}.e3")
        left = layers.MaxPooling2D(3, stride, padding="same", name=f"{name}.pool")(left) \
            if stride == 2 else left
        return layers.Concatenate(name=f"{name}.concat")([left, right])
    if kind == "gshuffle":
        groups = 2 if c % 4 else 4
        y = conv_bn(x, c, 1, groups=groups, name=f"{name}.g1")
        y = ChannelShuffle(groups, name=f"{name}.shuffle")(y)
        y = depthwise_bn(y, 3, strides=stride, act=None, name=f"{name}.dw")
        y = conv_bn(y, c, 1, groups=groups, act=None, name=f"{name}.g2")
        return layers.Add(name=f"{name}.add")([x, y]) if stride == 1 else y
    half = c // 2
    left, right = ChannelSplit((half, c - half), name=f"{name}.split")(x)
    right = conv_bn(right, c - half, 1, name=f"{name}.pw1")
    right = depthwise_bn(right, 3, act=None, name=f"{name}.dw")
    right = conv_bn(right, c - half, 1, name=f"{name}.pw2")
    y = layers.Concatenate(name=f"{name}.concat")([left, right])
    return ChannelShuffle(2, name=f"{name}.shuffle")(y)


CHAIN_UNITS = ("conv", "dwpw", "ir", "ir_hs", "se_hs", "shuffle", "fire", "gshuffle")


def _chain(x: Any, b: Block) -> Any:
    """A small random network of the zoo's units (``b.k`` of them): what the kernels
    cost once they run in one graph, one after another (the in-graph correction)."""
    rng = np.random.default_rng([SEED, b.hw, b.cin, b.k, b.groups])
    side, channels = b.in_hw, b.cin
    for i in range(b.k):
        kind = CHAIN_UNITS[int(rng.integers(len(CHAIN_UNITS)))]
        stride = 2 if side > 4 and rng.random() < 0.3 else 1
        keeps = kind in ("shuffle", "gshuffle") or (kind.startswith(("ir", "se")) and rng.random() < 0.5)
        cout = channels if keeps else int(
            rng.choice([c for c in CHANNELS if c <= max(64, 2 * channels)]))
        if kind == "shuffle":
            stride = 1
        x = _unit(x, kind, cout=cout, stride=stride, name=f"k.u{i}")
        side, channels = -(-side // stride), int(x.shape[-1])
    return x


#: kind -> (builder, how many shapes, the values its knobs take)
KINDS: dict[str, tuple[Callable[[Any, Block], Any], int, dict[str, tuple]]] = {
    "conv1x1": (_conv, 120, {"k": (1,), "stride": (1,), "act": ACTS}),
    "conv": (_conv, 50, {"k": (3, 5, 7), "stride": (1, 2), "act": ACTS}),
    "gconv": (_conv, 24, {"k": (1, 3), "stride": (1,), "groups": (2, 3, 4, 8), "act": ("relu", None)}),
    "dw": (_depthwise, 100, {"k": (3, 5, 7), "stride": (1, 2), "act": ACTS}),
    "dwd": (_depthwise, 30, {"k": (3,), "dilation": (2, 3, 4, 5), "act": (None, "prelu")}),
    "dense": (_dense, 12, {"cout": (10, 100, 1000)}),
    "pool": (_pool, 16, {"k": (2, 3), "stride": (1, 2), "act": ("max", "avg")}),
    "add": (_add, 16, {}),
    "concat": (_concat, 14, {}),
    "shuffle": (_shuffle, 14, {"groups": (2, 3, 4, 8)}),
    "se": (_squeeze_excite, 20, {"act": ("sigmoid", "hard_sigmoid")}),
    "act": (_activation, 24, {"act": ("relu", "relu6", "hard_swish", "sigmoid", "leaky", "prelu")}),
    "pad": (_pad, 8, {}),
    "chain": (_chain, 60, {"k": (3, 4, 6, 8), "groups": tuple(range(1, 9))}),  # groups: a seed
    # last, so that adding it left every earlier block (and a table's rows) as it was
    "dwds": (_strided_dilated, 24, {"k": (3,), "stride": (2,), "dilation": (1, 2, 3, 4, 5)}),
    "padpool": (_pad_pool, 16, {"k": (3,), "stride": (2,)}),
    # networks of the zoo's size (0.1 to 13 ms here): the small chains alone leave the
    # in-graph stage to extrapolate from 0.1 ms to the zoo's milliseconds
    "net": (_chain, 24, {"k": (8, 12, 16), "groups": tuple(range(1, 9))}),
    # where the zoo's ops lay outside the shapes above: a network's first conv reads the
    # image's 3 channels (the grid's channels start at 8; stride 1 in the 32 px
    # networks), ShuffleNet's grouped 1x1 convs, the max pools of ShuffleNet, SqueezeNet
    # and Xception, the gates of squeeze-excite, the int8 hard-swish of small
    # activations (MobileNet V3)
    "stem": (_conv, 36, {"cin": (3,), "cout": (8, 16, 24, 32, 40, 48, 64), "k": (1, 3, 5, 7),
                         "stride": (1, 2), "act": ACTS, "hw": SIDES[11:]}),
    "gconv1x1": (_conv, 36, {"k": (1,), "stride": (1,), "groups": (2, 3, 4, 8),
                             "act": ("relu", None)}),
    "maxpool": (_pool, 24, {"k": (2, 3), "stride": (1, 2), "act": ("max",), "hw": SIDES[7:19]}),
    "se_more": (_squeeze_excite, 20, {"act": ("sigmoid", "hard_sigmoid")}),
    "act_small": (_small_activation, 24, {"act": ("hard_swish",), "k": (2, 3, 4, 5, 6)}),
    # swish, x * sigmoid(x) (EfficientNet, MixNet): in int8 the runtime runs its LOGISTIC
    # and MUL as one kernel, SWISH
    "swish": (_activation, 24, {"act": ("swish",)}),
}

#: the kinds timed whole, as networks (every other block is cut into its ops)
CHAIN_KINDS = frozenset({"chain", "net"})


def _fits(b: Block) -> bool:
    if b.kind == "chain":
        return 8 <= b.hw <= 56 and b.cin <= 96
    if b.kind == "net":
        return 56 <= b.hw <= 112 and b.cin <= 48
    cin_per_group = b.cin // b.groups
    macs = {"conv1x1": b.hw ** 2 * b.cout * b.cin, "conv": b.hw ** 2 * b.cout * b.k ** 2 * b.cin,
            "gconv": b.hw ** 2 * b.cout * b.k ** 2 * cin_per_group,
            "gconv1x1": b.hw ** 2 * b.cout * cin_per_group,
            "add": 2 * b.hw ** 2 * b.cin ** 2, "concat": 2 * b.hw ** 2 * b.cin ** 2,
            }.get("conv" if b.kind == "stem" else b.kind, 0)
    if b.cin % b.groups or b.cout % b.groups or (b.kind == "shuffle" and b.cin % (2 * b.groups)):
        return False
    if b.kind in ("dwd", "dwds") and b.hw < 2 * b.dilation + 1:
        return False
    if b.kind == "pool" and b.in_hw < b.k:
        return False

    return (macs <= MAX_MACS and max(b.in_hw ** 2 * b.cin, b.hw ** 2 * b.cout) <= MAX_ELEMS
            and (b.kind not in ("conv", "stem") or b.in_hw >= b.k or b.k == 1))


_FREE_COUT = frozenset({"conv1x1", "conv", "gconv", "gconv1x1"})  # cout drawn, not cin


def _sample(kind: str, rng: np.random.Generator) -> Iterator[Block]:
    _, count, knobs = KINDS[kind]
    seen: set[str] = set()
    tries = 0
    while len(seen) < count and tries < 50 * count:
        tries += 1
        hw = int(rng.choice(SIDES[:7] if kind == "dense" else SIDES[1:]))
        cin = int(rng.choice(CHANNELS))
        values = {name: options[int(rng.integers(len(options)))] for name, options in knobs.items()}
        hw, cin = int(values.pop("hw", hw)), int(values.pop("cin", cin))
        cout = int(values.pop("cout", rng.choice(CHANNELS) if kind in _FREE_COUT else cin))
        block = Block(kind, hw, cin, cout, **values)
        if _fits(block) and block.id not in seen:
            seen.add(block.id)
            yield block


def grid() -> list[Block]:
    """Every calibration block, round-robin over kinds (the same list everywhere)."""
    rng = np.random.default_rng(SEED)
    per_kind = [list(_sample(kind, rng)) for kind in KINDS]
    ordered = []
    for i in range(max(len(blocks) for blocks in per_kind)):
        ordered += [blocks[i] for blocks in per_kind if i < len(blocks)]
    return ordered


def keras_block(block: Block) -> Any:
    """The block as a Keras model on a ``(in_hw, in_hw, cin)`` input."""
    import keras  # heavy: Keras

    side = block.in_hw if block.kind != "dense" else max(1, block.hw)
    inputs = keras.Input((side, side, block.cin), name="input")
    outputs = KINDS[block.kind][0](inputs, block)
    return keras.Model(inputs, outputs, name=block.id.replace(".", "_"))
