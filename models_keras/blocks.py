"""Block builders shared across families.

Layer names are hierarchical with dots (``stage2.unit1.dw``): Keras 3 forbids ``/``
in layer names, and dotted paths read like module paths in other frameworks. Every
layer a builder makes gets an explicit name, so names are stable across builds and
show up unchanged in exported graphs, sensitivity reports and per-layer profiles.
"""

from __future__ import annotations

from collections.abc import Callable


import keras
from keras import layers

from models_keras.layers import ChannelSplit, GroupConv2D
from models_keras.registry import Knob, PaperFigure, register_model

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% down.

    The one channel-rounding helper of the zoo (MobileNet V2, Sandler et al. 2018,
    and its successors round width-multiplied channels this way).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def common_knobs(*, resolution: int = 224, min_resolution: int = 32,
                 num_classes: int = 1000) -> tuple[Knob, ...]:
    """The knobs every classification network takes, with one name across families."""
    return (
        Knob("resolution", int, resolution, minimum=min_resolution, maximum=1024,
             short="r", help="input height and width in pixels"),
        Knob("num_classes", int, num_classes, minimum=1, maximum=100_000, help="classifier outputs"),
        Knob("include_top", bool, True, help="keep the pooling + classifier head"),
        Knob("dropout", float, 1e-3, minimum=0.0, maximum=0.99,
             help="dropout rate before the classifier"),
    )


def activation(x: keras.KerasTensor, kind: str | None, *, name: str) -> keras.KerasTensor:
    """Apply a named activation (``relu``, ``relu6``, ``prelu``, ``hard_swish``...)."""
    if kind is None:
        return x
    if kind == "relu6":
        return layers.ReLU(6.0, name=name)(x)
    if kind == "relu":
        return layers.ReLU(name=name)(x)
    if kind == "prelu":  # one learned slope per channel (ESPNet)
        return layers.PReLU(shared_axes=[1, 2], name=name)(x)
    return layers.Activation(kind, name=name)(x)


def bn_act(x: keras.KerasTensor, act: str | None, *, name: str) -> keras.KerasTensor:
    """Batch norm + activation after a conv: ``name.bn``, ``name.act``."""
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                  name=f"{name}.bn")(x)
    return activation(x, act, name=f"{name}.act")


def conv_bn(
    x: keras.KerasTensor, filters: int, kernel: int | tuple[int, int], *, name: str,
    strides: int = 1, groups: int = 1, act: str | None = "relu",
) -> keras.KerasTensor:
    """Convolution (optionally grouped) + batch norm + activation: ``name.conv/.bn/.act``."""
    conv = GroupConv2D if groups > 1 else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding="same", groups=groups,
             use_bias=False, name=f"{name}.conv")(x)
    return bn_act(x, act, name=name)


def depthwise_bn(
    x: keras.KerasTensor, kernel: int | tuple[int, int], *, name: str, strides: int = 1,
    act: str | None = "relu", dilation: int = 1,
) -> keras.KerasTensor:
    """Depthwise convolution + batch norm + activation: ``name.conv/.bn/.act``."""
    x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                               dilation_rate=dilation, name=f"{name}.conv")(x)
    return bn_act(x, act, name=name)


def stage_units(strides: list[int]) -> list[tuple[int, int]]:
    """Number per-unit table rows as (stage, unit): a stride-2 row starts a new stage."""
    numbered, stage, unit = [], 0, 0
    for i, stride in enumerate(strides):
        if i == 0 or stride == 2:
            stage, unit = stage + 1, 0
        unit += 1
        numbered.append((stage, unit))
    return numbered


def split_channels(total: int, parts: int) -> tuple[int, ...]:
    """Split ``total`` channels into ``parts`` near-equal groups, remainder to the first
    (MixNet's rule, Tan & Le 2019)."""
    sizes = [total // parts] * parts
    sizes[0] += total - sum(sizes)
    return tuple(sizes)


def mixed_depthwise_bn(
    x: keras.KerasTensor, kernels: tuple[int, ...], *, name: str, strides: int = 1,
    act: str | None = "relu",
) -> keras.KerasTensor:
    """MDConv (Tan & Le 2019, MixNet): channel groups, each with its own depthwise
    kernel size, concatenated: ``name.split``, ``name.conv.k3``..., ``name.concat``."""
    if len(kernels) == 1:
        return depthwise_bn(x, kernels[0], strides=strides, act=act, name=name)
    parts = ChannelSplit(split_channels(x.shape[-1], len(kernels)), name=f"{name}.split")(x)
    parts = [layers.DepthwiseConv2D(k, strides=strides, padding="same", use_bias=False,
                                    name=f"{name}.conv.k{k}")(part)
             for part, k in zip(parts, kernels)]
    x = layers.Concatenate(name=f"{name}.concat")(parts)
    return bn_act(x, act, name=name)


def squeeze_excite(
    x: keras.KerasTensor, *, reduced: int, name: str, act: str = "relu",
    gate: str = "hard_sigmoid",
) -> keras.KerasTensor:
    """Squeeze-and-excitation (Hu et al. 2018): pool, reduce, expand, gate, scale."""
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.pool")(x)
    s = layers.Conv2D(reduced, 1, name=f"{name}.reduce")(s)
    s = activation(s, act, name=f"{name}.act")
    s = layers.Conv2D(x.shape[-1], 1, name=f"{name}.expand")(s)
    s = activation(s, gate, name=f"{name}.gate")
    return layers.Multiply(name=f"{name}.scale")([x, s])


def inverted_residual(
    x: keras.KerasTensor, *, expanded: int, filters: int, strides: int, name: str,
    kernel: int | tuple[int, ...] = 3, act: str = "relu6", se_channels: int = 0,
    se_act: str = "relu", se_gate: str = "hard_sigmoid", expand_groups: int = 1,
    project_groups: int = 1,
) -> keras.KerasTensor:
    """Inverted residual (MobileNet V2) with the later options: SE (MnasNet, V3),
    mixed kernels and grouped 1x1s (MixNet). Layers: ``name.expand`` (skipped when
    ``expanded`` equals the input width), ``name.dw``, ``name.se``, ``name.project``,
    ``name.add`` (stride 1, same width)."""
    in_channels = x.shape[-1]
    shortcut = x
    if expanded != in_channels:
        x = conv_bn(x, expanded, 1, act=act, groups=expand_groups, name=f"{name}.expand")
    kernels = kernel if isinstance(kernel, tuple) else (kernel,)
    x = mixed_depthwise_bn(x, kernels, strides=strides, act=act, name=f"{name}.dw")
    if se_channels:
        x = squeeze_excite(x, reduced=se_channels, act=se_act, gate=se_gate, name=f"{name}.se")
    x = conv_bn(x, filters, 1, act=None, groups=project_groups, name=f"{name}.project")
    if strides == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}.add")([shortcut, x])
    return x


def se_width(in_channels: int, ratio: float) -> int:
    """SE bottleneck width of MnasNet/EfficientNet/MixNet's reference code: a ratio of
    the unit's *input* channels, at least 1 (0 ratio: no SE)."""
    return max(1, int(in_channels * ratio)) if ratio else 0


# t: expansion, c: output channels, n: units, s: first stride, k: kernel, se: SE ratio
# of the unit's input channels (0 = none).
MBConvRow = tuple[int, int, int, int, int, float]


def mbconv_stages(
    x: keras.KerasTensor, table: tuple[MBConvRow, ...], *, act: str, se_act: str,
    se_gate: str = "sigmoid",
) -> keras.KerasTensor:
    """Stack MBConv stages from a ``# t, c, n, s, k, se`` table (MnasNet, EfficientNet):
    SE width follows :func:`se_width`."""
    for stage, (t, c, n, s, k, se) in enumerate(table, start=1):
        for unit in range(n):
            in_channels = x.shape[-1]
            x = inverted_residual(
                x, expanded=in_channels * t, filters=c, strides=s if unit == 0 else 1,
                kernel=k, act=act, se_channels=se_width(in_channels, se),
                se_act=se_act, se_gate=se_gate, name=f"stage{stage}.unit{unit + 1}",
            )
    return x


def mbconv_network(
    table: tuple[MBConvRow, ...], *, name: str, act: str, stem: int, head: int,
    resolution: int, num_classes: int, include_top: bool, dropout: float,
) -> keras.Model:
    """Stem conv, MBConv stages, 1x1 head conv, classifier (MnasNet, EfficientNet).
    ``act`` serves the convs and the SE reduction; the SE gate is a sigmoid."""
    inputs = image_input(resolution)
    x = conv_bn(inputs, stem, 3, strides=2, act=act, name="stem")
    x = mbconv_stages(x, table, act=act, se_act=act)
    x = conv_bn(x, head, 1, act=act, name="head")
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name=name)


def classifier(
    x: keras.KerasTensor, *, num_classes: int, dropout: float, name: str = "classifier",
) -> keras.KerasTensor:
    """Global average pool, dropout, dense logits and softmax (``classifier.*``)."""
    x = layers.GlobalAveragePooling2D(name=f"{name}.pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}.dropout")(x)
    x = layers.Dense(num_classes, name=f"{name}.fc")(x)
    return layers.Softmax(name=f"{name}.softmax")(x)


def finish(inputs: keras.KerasTensor, outputs: keras.KerasTensor, *, name: str) -> keras.Model:
    """Wrap the graph in a model (weights are loaded by the registry, never here)."""
    return keras.Model(inputs, outputs, name=name)


def keras_twin(app: str, **fixed: object):
    """A builder of the ``keras.applications`` twin with the same knobs (``weights=None``,
    never downloaded), used to pin our params to Keras' and for peer benchmarks."""

    def build(*, resolution: int, num_classes: int, include_top: bool,
              width_multiplier: float | None = None, **_: object) -> keras.Model:
        alpha = {} if width_multiplier is None else {"alpha": width_multiplier}
        return getattr(keras.applications, app)(
            input_shape=(resolution, resolution, 3), weights=None, classes=num_classes,
            include_top=include_top, **alpha, **fixed,
        )

    return build


def image_input(resolution: int) -> keras.KerasTensor:
    """The NHWC float input every zoo model takes, named ``input``."""
    return keras.Input((resolution, resolution, 3), name="input")


def register_with_baseline(*, name: str, family: str, paper: str, description: str,
                           build: Callable[..., keras.Model]) -> None:
    """Register a CIFAR-scale factored network, ``build(factored=True, name=...,
    **knobs)``, as ``name`` and its 3-D baseline (the same table with full k x k
    convolutions), ``build(factored=False, ...)``, as ``name_baseline`` (Flattened and
    Factorized networks: no paper figure is pinned, their tables are ours)."""
    knobs = common_knobs(resolution=32, min_resolution=8, num_classes=10)
    figures = (PaperFigure((), None, None, source=f"{paper} (architecture only; no figure pinned)"),)
    pair = ((True, name, description),
            (False, f"{name}_baseline", f"the {family} net's 3-D conv baseline (CIFAR scale)"))
    for factored, model_name, text in pair:
        def builder(*, _factored: bool = factored, _name: str = model_name,
                    **given: object) -> keras.Model:
            return build(factored=_factored, name=_name, **given)

        builder.__doc__ = f"Build {model_name} ({text})."
        register_model(name=model_name, family=family, knobs=knobs, paper=paper,
                       figures=figures, description=text)(builder)


def cifar_stack(inputs: keras.KerasTensor, x: keras.KerasTensor, rows: list,
                layer: Callable[..., keras.KerasTensor],
                *, name: str, num_classes: int, include_top: bool, dropout: float) -> keras.Model:
    """Stages of ``layer`` (each row: its arguments, layer count, 2x2 max-pool after it
    or not; layers ``stageS.layerL``), then the classifier: the CIFAR-scale skeleton of
    the Flattened and Factorized networks and their baselines."""
    for stage, (args, count, pool) in enumerate(rows, start=1):
        for unit in range(1, count + 1):
            x = layer(x, *args, name=f"stage{stage}.layer{unit}")
        if pool:
            x = layers.MaxPooling2D(2, padding="same", name=f"stage{stage}.pool")(x)
    if include_top:
        x = classifier(x, num_classes=num_classes, dropout=dropout)
    return finish(inputs, x, name=name)
