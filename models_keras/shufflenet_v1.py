"""ShuffleNet V1 (Zhang et al. 2017, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", arXiv:1707.01083).

Bottleneck units with pointwise group convolutions and a channel shuffle between the
first group conv and the 3x3 depthwise conv. A stride-2 unit adds a 3x3 average-pool
shortcut and concatenates instead of adding. The first pointwise layer of stage 2 is
not grouped: its input has only 24 channels.
"""

from __future__ import annotations

import keras
from keras import layers

from mobilectl.core.errors import UserError
from models_keras.blocks import classifier, common_knobs, conv_bn, depthwise_bn, finish, image_input
from models_keras.layers import ChannelShuffle
from models_keras.registry import Knob, PaperFigure, register_model

PAPER = "Zhang et al. 2017, ShuffleNet, arXiv:1707.01083 (Tables 1-2)"

# Output channels of stages 2, 3, 4 at 1x, per number of groups g (Table 1).
STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
UNITS = (4, 8, 4)  # repeats of stages 2, 3, 4; the first unit of each has stride 2
BOTTLENECK_RATIO = 4  # bottleneck channels = output channels / 4

KNOBS = (
    Knob("groups", int, 3, choices=tuple(STAGE_CHANNELS), short="g",
         help="groups of the pointwise convolutions"),
    Knob("width_multiplier", float, 1.0, choices=(0.5, 1.0, 1.5, 2.0), short="w",
         help="the paper's scale factor s (0.5x ... 2x)"),
    *common_knobs(resolution=224),
)
FIGURES = (
    # Table 1 rounds to whole millions: 3% (the registry's tolerance for rounded figures).
    *(PaperFigure((("groups", g),), macs, None, macs_tolerance=0.03, source=PAPER + " Table 1")
      for g, macs in ((1, 143), (2, 140), (3, 137), (4, 133), (8, 137))),
)


def _stem_channels(width_multiplier: float) -> int:
    return 48 if width_multiplier >= 2.0 else 24


def shuffle_unit(x: keras.KerasTensor, out_channels: int, *, groups: int, strides: int,
                 first_groups: int, name: str) -> keras.KerasTensor:
    """ShuffleNet unit (Fig. 2b/c): ``name.gconv1``, ``name.shuffle``, ``name.dw``,
    ``name.gconv2``, then ``name.add`` or (stride 2) ``name.shortcut`` + ``name.concat``."""
    in_channels = x.shape[-1]
    branch_out = out_channels - in_channels if strides == 2 else out_channels
    mid = out_channels // BOTTLENECK_RATIO
    # every grouped 1x1 needs its input and output channels to split into its groups
    for channels, g in ((in_channels, first_groups), (mid, first_groups), (mid, groups),
                        (branch_out, groups)):
        if channels % g:
            raise UserError(f"{name}: {channels} channels do not split into groups={g}; "
                            "pick another groups/width_multiplier pair")
    y = conv_bn(x, mid, 1, groups=first_groups, name=f"{name}.gconv1")
    if first_groups > 1:
        y = ChannelShuffle(first_groups, name=f"{name}.shuffle")(y)
    y = depthwise_bn(y, 3, strides=strides, act=None, name=f"{name}.dw")
    y = conv_bn(y, branch_out, 1, groups=groups, act=None, name=f"{name}.gconv2")
    if strides == 2:
        # ReLU(concat(pool, y)) = concat(pool, ReLU(y)): x is a ReLU's (or the stem's
        # max-pooled ReLU's) output, so its average pool is already non-negative. The
        # ReLU on the branch alone fuses into the converter's ADD (the folded bn); a
        # ReLU after the concat stays a standalone int8 RELU, which XNNPACK does not
        # run (LiteRT's builtin kernel took 0.36 ms per stride-2 unit at 224 px).
        y = layers.ReLU(name=f"{name}.act")(y)
        shortcut = layers.AveragePooling2D(3, strides=2, padding="same", name=f"{name}.shortcut")(x)
        return layers.Concatenate(name=f"{name}.concat")([shortcut, y])
    y = layers.Add(name=f"{name}.add")([x, y])
    return layers.ReLU(name=f"{name}.act")(y)


@register_model(
    name="shufflenet_v1", family="shufflenet_v1", knobs=KNOBS, paper=PAPER, figures=FIGURES,
    description="pointwise group conv + channel shuffle",
)
def shufflenet_v1(
    *, groups: int, width_multiplier: float, resolution: int, num_classes: int,
    include_top: bool, dropout: float,
) -> keras.Model:
    """Build ShuffleNet V1 with ``groups`` groups at scale ``width_multiplier``."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, _stem_channels(width_multiplier), 3, strides=2, name="stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem.pool")(x)
    for stage, (channels, units) in enumerate(zip(STAGE_CHANNELS[groups], UNITS), start=2):
        for unit in range(units):
            first = stage == 2 and unit == 0
            x = shuffle_unit(x, int(channels * width_multiplier), groups=groups,
                             strides=2 if unit == 0 else 1, first_groups=1 if first else groups,
                             name=f"stage{stage}.unit{unit + 1}")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name="shufflenet_v1")
