"""Magnitude pruning: the smallest weights zeroed and held at zero through fine-tuning,
exported in TFLite's sparse encoding, and the XNNPACK sparse-inference lint read back
from the flatbuffer, condition by condition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import run
from mobilectl.core.errors import UserError
from quant import sparsity


def _net(resolution: int = 33):
    """Stem, a depthwise unit, two 1x1 convs, global average pool, classifier: the
    shape XNNPACK's sparse path asks for (with an odd input, SAME pads 1 on each side)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((resolution, resolution, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="unit1.dw")(x)
    x = keras.layers.Conv2D(64, 1, activation="relu", name="unit1.pw")(x)
    x = keras.layers.Conv2D(64, 1, activation="relu", name="unit2.pw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, name="classifier")(x)
    return keras.Model(inputs, outputs, name="tiny")


def test_masks_zero_the_smallest_weights_of_each_kernel_but_the_stem() -> None:
    model = _net()
    before = {layer.name: layer.get_weights() for layer in model.layers}
    masks = sparsity.magnitude_masks(model, sparsity=0.75)
    assert [(m.layer, m.weight) for m in masks] == [
        ("unit1.pw", "kernel"), ("unit2.pw", "kernel"), ("classifier", "kernel")]
    sparsity.apply_masks(model, masks)
    for mask in masks:
        kernel = model.get_layer(mask.layer).kernel.numpy()
        assert mask.zeros == round(0.75 * kernel.size) == kernel.size - np.count_nonzero(kernel)
        kept = np.abs(before[mask.layer][0])[mask.keep]
        dropped = np.abs(before[mask.layer][0])[~mask.keep]
        assert dropped.max() <= kept.min()  # magnitude decides
    for name in ("stem", "unit1.dw"):  # left dense
        assert np.array_equal(model.get_layer(name).get_weights()[0], before[name][0])
    assert sparsity.zero_share(model) == pytest.approx(0.75, abs=1e-3)
    with pytest.raises(UserError, match="--sparsity 1 is not allowed"):
        sparsity.magnitude_masks(model, sparsity=1.0)


def test_the_mask_holds_pruned_weights_at_zero_through_training() -> None:
    import keras

    x = np.random.default_rng(0).standard_normal((64, 33, 33, 3)).astype(np.float32)
    y = np.arange(64) % 10
    for keep_masks in (True, False):
        model = _net()
        masks = sparsity.magnitude_masks(model, sparsity=0.8)
        sparsity.apply_masks(model, masks)
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                  callbacks=[sparsity.mask_keeper(masks)] if keep_masks else None)
        share = sparsity.zero_share(model)
        if keep_masks:
            assert share == pytest.approx(0.8, abs=1e-3)
        else:  # without the mask, Adam revives the pruned weights at once
            assert share < 0.1


def _tflite(model, *, sparse: bool, **options) -> bytes:
    from exporter.tflite import convert

    return convert(model, sparse=sparse, **options)


def _conditions(data: bytes, arch: str) -> dict[str, bool]:
    from device_profiles.sparse_lint import lint

    return {c.name: c.met for c in lint(data, arch=arch).conditions}


def test_lint_says_which_conditions_a_model_meets_and_misses() -> None:
    from device_profiles.sparse_lint import lint

    model = _net()
    sparsity.apply_masks(model, sparsity.magnitude_masks(model, sparsity=0.8))
    sparse = _tflite(model, sparse=True)
    found = lint(sparse, arch="arm64-v8a")
    assert found.sparse and found.zero_share == pytest.approx(0.8, abs=1e-3)
    assert found.line().startswith("XNNPACK sparse inference on arm64-v8a: runs sparse")
    on_x86 = lint(sparse, arch="x86_64")
    assert not on_x86.sparse and [c.name for c in on_x86.conditions if not c.met] == ["cpu"]
    assert "misses: x86_64" in on_x86.line()
    dense = _tflite(model, sparse=False)
    assert len(sparse) < 0.6 * len(dense)
    assert _conditions(dense, "arm64-v8a") == {**_conditions(sparse, "arm64-v8a"),
                                               "encoding": False}
    even = _net(32)  # SAME on an even input pads 0 before and 1 after
    sparsity.apply_masks(even, sparsity.magnitude_masks(even, sparsity=0.8))
    assert "stem pads 0/1" in lint(_tflite(even, sparse=True), arch="arm64-v8a").line()
    light = _net()
    sparsity.apply_masks(light, sparsity.magnitude_masks(light, sparsity=0.5))
    assert _conditions(_tflite(light, sparse=True), "arm64-v8a")["zeros"] is False


def test_lint_of_an_int8_model_misses_float() -> None:
    from mobilectl.core.types import Precision

    model = _net()
    calibration = np.random.default_rng(0).standard_normal((8, 33, 33, 3)).astype(np.float32)
    data = _tflite(model, sparse=False, precision=Precision.INT8, calibration=calibration)
    found = _conditions(data, "arm64-v8a")
    assert found["float"] is False and found["stem"] is True


def test_prune_magnitude_exports_sparse_and_records_it(digits_model: dict, tmp_path: Path,
                                                       capsys) -> None:
    from models_keras.training import digits_pixels
    from mobilectl.core.manifest import read_manifest

    pixels, labels = digits_pixels()
    np.savez(tmp_path / "digits.npz", x=pixels, y=labels)
    code, out, err = run(["prune", "mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes",
                          "10", "--weights", digits_model["weights"], "--data",
                          str(tmp_path / "digits.npz"), "--method", "magnitude", "--sparsity",
                          "0.7", "--epochs", "2", "--out", str(tmp_path / "s.keras"), "--json"],
                         capsys)
    assert code == 0, err
    report = json.loads(out)
    before, pruned, after = report["before"], report["pruned"], report["after"]
    assert after["macs"] == before["macs"] and after["params"] == before["params"]
    assert after["nonzero"] <= pruned["nonzero"] < 0.45 * before["nonzero"]
    assert after["top1"] > pruned["top1"]
    from exporter.pipeline import build_or_load

    saved = build_or_load(str(tmp_path / "s.keras")).model
    assert sparsity.zero_share(saved) == pytest.approx(0.7, abs=1e-3)  # the mask held
    sizes, printed = {}, {}
    for sparse in (True, False):
        folder = tmp_path / f"art-{sparse}"
        code, out, err = run(["export", str(tmp_path / "s.keras"), "--format", "tflite",
                              "--out", str(folder), "--json", *(["--sparse"] if sparse else [])],
                             capsys)
        assert code == 0, err
        [entry] = read_manifest(folder).artifacts
        assert entry.sparse is sparse and entry.verification.passed
        sizes[sparse], printed[sparse] = entry.bytes, json.loads(out)["artifacts"][0]
    assert sizes[True] < 0.6 * sizes[False]
    lint = printed[True]["sparse_lint"]
    assert lint["conditions"][0] == {"name": "encoding", "met": True,
                                     "detail": "14 DENSIFY weights"}
    assert "sparse_lint" not in printed[False]
    made = read_manifest(tmp_path / "art-True").artifacts[0].derivation
    assert (made.method, made.sparsity, made.ratio, made.epochs) == ("magnitude", 0.7, None, 2)
    _profile_says_how_xnnpack_runs_it(tmp_path, capsys)


def _profile_says_how_xnnpack_runs_it(tmp_path: Path, capsys) -> None:
    from device_profiles.sparse_lint import X86
    from quant.onnx_quant import host_arch

    for sparse in (True, False):
        code, out, err = run(["profile", str(tmp_path / f"art-{sparse}" / "manifest.json"),
                              "--runs", "5", "--warmup", "1", "--min-reps", "1",
                              "--out", str(tmp_path / f"prof-{sparse}"), "--json"], capsys)
        assert code == 0, err
        [measured] = json.loads(out)["measurements"]
        if not sparse:
            assert measured["sparse_lint"] is None and "XNNPACK" not in err
            continue
        found = {c["name"]: c["met"] for c in measured["sparse_lint"]["conditions"]}
        assert found["encoding"] and found["cpu"] is (host_arch() not in X86)
        assert f"XNNPACK sparse inference on {host_arch()}" in err
