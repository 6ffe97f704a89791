"""ShuffleNet V2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient
CNN Architecture Design", arXiv:1807.11164).

Built to the paper's guidelines: equal channel widths (G1), no group convolution (G2),
few branches (G3), element-wise work cut by channel split + concat instead of add (G4).
A stride-1 unit splits the channels in half, transforms one half and concatenates;
a stride-2 unit transforms both halves; every unit ends with a channel shuffle.
"""

from __future__ import annotations

import keras
from keras import layers

from models_keras.blocks import classifier, common_knobs, conv_bn, depthwise_bn, finish, image_input
from models_keras.layers import ChannelShuffle, ChannelSplit
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Ma et al. 2018, ShuffleNet V2, arXiv:1807.11164 (Table 5)"
TORCHVISION = "torchvision shufflenet_v2 reference implementation (params)"

# Output channels of stages 2, 3, 4 and of conv5, per width multiplier (Table 5).
STAGE_CHANNELS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}
UNITS = (4, 8, 4)  # repeats of stages 2, 3, 4; the first unit of each has stride 2
STEM_CHANNELS = 24

KNOBS = (
    Knob("width_multiplier", float, 1.0, choices=tuple(STAGE_CHANNELS), short="w",
         help="the paper's 0.5x/1x/1.5x/2x"),
    *common_knobs(resolution=224),
)
# Params: exactly torchvision's learnable count. MACs: torchvision's published FLOPs
# (0.04/0.14/0.30/0.58 G) agree with ours; the paper counts 0.8-1.3% more by a
# convention it does not spell out, hence 2%.
FIGURES = tuple(
    PaperFigure((("width_multiplier", w),), macs, params, macs_tolerance=0.02,
                source=f"{PAPER}; {TORCHVISION}")
    for w, macs, params in ((0.5, 41, 1.366792), (1.0, 146, 2.278604),
                            (1.5, 299, 3.503624), (2.0, 591, 7.393996))
)


def _branch(x: keras.KerasTensor, channels: int, *, strides: int, name: str) -> keras.KerasTensor:
    x = conv_bn(x, channels, 1, name=f"{name}.pw1")
    x = depthwise_bn(x, 3, strides=strides, act=None, name=f"{name}.dw")
    return conv_bn(x, channels, 1, name=f"{name}.pw2")


def shuffle_unit(x: keras.KerasTensor, out_channels: int, *, strides: int, name: str):
    """ShuffleNet V2 unit (Fig. 3c/d): split (stride 1) or two branches (stride 2),
    concat, shuffle: ``name.split``, ``name.pw1/dw/pw2``, ``name.proj_dw/proj_pw``,
    ``name.concat``, ``name.shuffle``."""
    half = out_channels // 2
    if strides == 1:
        left, right = ChannelSplit((half, half), name=f"{name}.split")(x)
    else:
        left = depthwise_bn(x, 3, strides=2, act=None, name=f"{name}.proj_dw")
        left = conv_bn(left, half, 1, name=f"{name}.proj_pw")
        right = x
    right = _branch(right, half, strides=strides, name=name)
    x = layers.Concatenate(name=f"{name}.concat")([left, right])
    return ChannelShuffle(2, name=f"{name}.shuffle")(x)


@register_model(
    name="shufflenet_v2", family="shufflenet_v2", knobs=KNOBS, paper=PAPER, figures=FIGURES,
    description="channel split, concat, shuffle",
)
def shufflenet_v2(
    *, width_multiplier: float, resolution: int, num_classes: int, include_top: bool,
    dropout: float,
) -> keras.Model:
    """Build ShuffleNet V2 at the given width multiplier (0.5x, 1x, 1.5x, 2x)."""
    *stage_channels, head = STAGE_CHANNELS[width_multiplier]
    inputs = image_input(resolution)
    x = conv_bn(inputs, STEM_CHANNELS, 3, strides=2, name="stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem.pool")(x)
    for stage, (channels, units) in enumerate(zip(stage_channels, UNITS), start=2):
        for unit in range(units):
            x = shuffle_unit(x, channels, strides=2 if unit == 0 else 1,
                             name=f"stage{stage}.unit{unit + 1}")
    x = conv_bn(x, head, 1, name="head")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="shufflenet_v2")
