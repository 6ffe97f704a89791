"""Family-specific structure the generated zoo tests cannot see."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from mobilectl.core.errors import UserError
from models_keras import build_model
from models_keras.analysis import analyze_model
from models_keras.layers import ChannelShuffle, ChannelSplit, GroupConv2D


def _names(model: keras.Model) -> set[str]:
    return {layer.name for layer in model.layers}


def test_squeezenet_1_1_is_about_2_4x_cheaper() -> None:
    ratio = analyze_model(build_model("squeezenet1_0")).macs / analyze_model(
        build_model("squeezenet1_1")).macs
    assert 2.3 < ratio < 2.5


def test_shufflenet_v2_unit_layout() -> None:
    model = build_model("shufflenet_v2", resolution=64, width_multiplier=0.5)
    names = _names(model)
    assert {"stage3.unit2.split", "stage3.unit2.shuffle", "stage3.unit2.concat",
            "stage2.unit1.proj_dw.conv", "stage2.unit1.proj_pw.conv", "stem.pool",
            "head.conv"} <= names
    assert "stage2.unit1.split" not in names  # stride-2 units have two branches, no split
    assert not any(name.endswith(".add") for name in names)  # G4: concat, never add


def test_shufflenet_v1_groups_and_shortcuts() -> None:
    model = build_model("shufflenet_v1", groups=3, resolution=64)
    assert model.get_layer("stage2.unit1.gconv1.conv").groups == 1  # 24 input channels
    assert model.get_layer("stage2.unit2.gconv1.conv").groups == 3
    assert model.get_layer("stage3.unit1.gconv2.conv").groups == 3
    assert isinstance(model.get_layer("stage3.unit1.shortcut"), keras.layers.AveragePooling2D)
    assert {"stage3.unit1.concat", "stage3.unit2.add", "stage3.unit2.shuffle"} <= _names(model)
    assert "stage2.unit1.shuffle" not in _names(model)  # nothing to shuffle with one group


def test_shufflenet_v1_refuses_channels_that_do_not_split() -> None:
    with pytest.raises(UserError, match="do not split into groups=4"):
        build_model("shufflenet_v1", groups=4, width_multiplier=0.5, resolution=64)


def test_mixnet_mdconv_kernels() -> None:
    model = build_model("mixnet_s", resolution=64)
    kernels = {model.get_layer(f"stage10.unit1.dw.conv.k{k}").kernel_size for k in (3, 5, 7, 9, 11)}
    assert kernels == {(k, k) for k in (3, 5, 7, 9, 11)}
    assert model.get_layer("stage2.unit1.expand.conv").groups == 2


def test_effnet_block_factorisation() -> None:
    model = build_model("effnet")
    assert model.get_layer("stage1.dw_1x3.conv").kernel_size == (1, 3)
    assert model.get_layer("stage1.dw_3x1.conv").kernel_size == (3, 1)
    assert model.get_layer("stage1.pool").pool_size == (2, 1)
    assert model.get_layer("stage1.pw_2x1.conv").strides == (1, 2)
    assert model.output.shape == (None, 10) and "stem.conv" not in _names(model)


def test_channel_shuffle_permutation() -> None:
    x = np.arange(6, dtype="float32").reshape(1, 1, 1, 6)
    y = np.asarray(ChannelShuffle(2)(x)).ravel()
    assert y.tolist() == [0, 3, 1, 4, 2, 5]


def test_channel_split_sizes() -> None:
    parts = ChannelSplit((3, 1))(np.ones((1, 2, 2, 4), "float32"))
    assert [tuple(p.shape) for p in parts] == [(1, 2, 2, 3), (1, 2, 2, 1)]


def test_group_conv_equals_keras_grouped_conv() -> None:
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 12)).astype("float32")
    ours = GroupConv2D(9, 3, groups=3, padding="same")
    reference = keras.layers.Conv2D(9, 3, groups=3, padding="same")
    ours.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-5)


def test_custom_layers_round_trip_with_safe_mode(tmp_path: Path) -> None:
    model = build_model("shufflenet_v1", groups=2, resolution=64, num_classes=5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_espnetv2_eesp_pyramid_and_reinforcement() -> None:
    from models_keras.espnetv2 import dilations, level_channels
    from models_keras.layers import StridedDilatedDepthwiseConv2D

    assert level_channels(1.0) == (32, 64, 128, 256, 512, 1024)
    assert level_channels(0.5) == (16, 32, 64, 128, 256, 1024)
    assert level_channels(1.25) == (32, 80, 160, 320, 640, 1024)
    assert level_channels(2.0) == (32, 128, 256, 512, 1024, 1280)
    assert dilations(13) == (1, 2, 3, 4) and dilations(7) == (1, 1, 2, 3)
    assert dilations(5) == (1, 1, 1, 2)
    model = build_model("espnetv2", resolution=64)
    names = _names(model)
    strided = model.get_layer("stage3.down.eesp.branch4")
    assert isinstance(strided, StridedDilatedDepthwiseConv2D)
    assert strided.dilation_rate == (4, 4) and strided.output.shape[1] == 8  # 64 -> 8
    assert model.get_layer("stage4.unit7.branch4").dilation_rate == (3, 3)
    assert model.get_layer("stage3.unit1.reduce.conv").groups == 4
    assert {"stage3.unit1.hff2", "stage3.unit1.hff4", "stage3.unit1.add",
            "stage2.down.reinf", "stage4.down.reinf"} <= names
    assert "stage5.down.reinf" not in names  # the last level has no image shortcut
    assert "stage2.unit1.reduce.conv" not in names  # level 2 is a down-sampler only


def test_strided_dilated_depthwise_equals_dilated_then_subsampled() -> None:
    from models_keras.layers import StridedDilatedDepthwiseConv2D

    x = np.random.default_rng(0).normal(size=(1, 9, 9, 4)).astype("float32")
    strided = StridedDilatedDepthwiseConv2D(3, padding="same", dilation_rate=3, subsample=2)
    dense = keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=3)
    y = np.asarray(strided(x))
    dense(x)
    dense.set_weights(strided.get_weights())
    assert y.shape == (1, 5, 5, 4)
    np.testing.assert_allclose(y, np.asarray(dense(x))[:, ::2, ::2], atol=1e-6)


def test_flattened_layers_are_rank_one_and_cheaper_than_the_baseline() -> None:
    from models_keras.flattened import LVH_SETS, STAGES, STEM

    flat = build_model("flattened_net")
    base = build_model("flattened_net_baseline")
    assert model_layer_kernel(flat, "stage1.layer1.v1") == (5, 1, 96, 1)
    assert model_layer_kernel(flat, "stage1.layer1.h2") == (1, 5, 96, 1)
    assert model_layer_kernel(flat, "stage2.layer1.l1") == (1, 1, 96, 128)
    # weights per the paper's count: lateral M*N, then 1-D vertical and horizontal k*N
    expected, cin = 3 * 3 * 3 * STEM[0] + STEM[0], STEM[0]
    for filters, kernel, count, _ in STAGES:
        for _ in range(count):
            for i in range(LVH_SETS):
                expected += (cin if i == 0 else filters) * filters + filters
                expected += 2 * (kernel * filters + filters)
            cin = filters
    head = flat.get_layer("classifier.fc").count_params()
    assert flat.count_params() - head == expected
    ratio = analyze_model(base).macs / analyze_model(flat).macs
    assert ratio > 5, ratio  # the 3-D baseline costs several times the flattened net


def model_layer_kernel(model: keras.Model, name: str) -> tuple[int, ...]:
    return tuple(model.get_layer(name).kernel.shape)


def test_factorized_layers_match_the_closed_form_and_save_against_the_baseline() -> None:
    """Every factorized layer costs H*W*(k*k*C + C*C'/g) MACs (single intra-channel
    conv + grouped projection, Wang et al. 2017); the residual joins same-shape layers;
    the 3-D baseline of the same table costs several times more."""
    from models_keras.factorized import STAGES, STEM

    fact = build_model("factorized_net")
    cost = {c.name: c for c in analyze_model(fact).layers}
    size, channels = 32, STEM[0]
    for stage, (filters, k, count, groups, pool) in enumerate(STAGES, start=1):
        for unit in range(1, count + 1):
            name = f"stage{stage}.layer{unit}"
            macs = cost[f"{name}.sic"].macs + cost[f"{name}.project.conv"].macs
            assert macs == size * size * (k * k * channels + channels * filters // groups), name
            assert (f"{name}.add" in cost) == (channels == filters), name
            channels = filters
        size = size // 2 if pool else size
    base = analyze_model(build_model("factorized_net_baseline"))
    ratio = base.macs / analyze_model(fact).macs
    assert ratio > 5, ratio


def test_nasnet_cells_follow_their_tables() -> None:
    """NASNet-A (Zoph et al. 2018): every normal cell has the five blocks of its table
    and concatenates six states; reduction cells halve the size and double the filters;
    the first stem cell's previous state is its raw input (no adjust path)."""
    from models_keras.nasnet import NORMAL, REDUCTION

    model = build_model("nasnet_mobile", resolution=64, num_classes=10)
    names = _names(model)
    for b, (left, _, right, _) in enumerate(NORMAL, start=1):
        for side, op in (("left", left), ("right", right)):
            if op.startswith("sep"):
                assert f"cell3.normal.block{b}.{side}.{op}.conv2" in names
    assert {f"cell5.reduce.block{b}.add" for b in range(1, len(REDUCTION) + 1)} <= names
    cells = [f"cell{i}.{'reduce' if i in (5, 10) else 'normal'}" for i in range(1, 15)]
    widths = [model.get_layer(f"{c}.concat").output.shape[1:] for c in cells]
    assert widths[0] == (8, 8, 6 * 44) and widths[4] == (4, 4, 4 * 88)
    assert widths[-1] == (2, 2, 1056) and "cell15.normal.concat" not in names
    assert "stem.reduce1.adjust.conv" not in names and "stem.reduce2.adjust.path2.conv" in names
    assert model.get_layer("cell1.normal.adjust.crop").output.shape[1:3] == (16, 16)


def test_nasnet_knobs_scale_the_cost() -> None:
    base = analyze_model(build_model("nasnet_mobile", resolution=64))
    deeper = analyze_model(build_model("nasnet_mobile", resolution=64, cell_repeats=6))
    wider = analyze_model(build_model("nasnet_mobile", resolution=64, penultimate_filters=2112))
    assert base.macs < deeper.macs < 1.6 * base.macs
    assert 2.5 * base.macs < wider.macs < 4.5 * base.macs
    with pytest.raises(UserError, match=r"penultimate_filters=1000 .* a multiple of 96"):
        build_model("nasnet_mobile", penultimate_filters=1000)
