"""Structured pruning: channels really removed, weights copied through every consumer,
ties kept (residual adds, squeeze-excite, concatenations, ShuffleNet's shuffle), and
``mobilectl prune`` end to end on the digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import error_line, run
from models_keras.analysis import analyze_model
from models_keras.registry import ModelSpec, family_representatives
from mobilectl.core.errors import UserError
from quant import pruning
from quant.pruning import Method

FAMILIES = family_representatives()
#: families whose every conv feeds a grouped conv or a channel shuffle: nothing to prune
UNPRUNABLE = {"shufflenet_v1", "factorized_net"}


def _masked(model, graph: pruning._Graph, kept: dict[int, np.ndarray]):
    """The original model with every weight that reads a removed channel zeroed: the
    removed channels then reach nothing, so it must compute what the pruned model does."""
    import keras

    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    for layer in twin.layers:
        reads = graph.reads[layer.name]
        found = kept.get(graph.find(reads[0])) if reads else None
        kind = type(layer).__name__
        if found is None or kind not in ("Conv2D", "Dense", "SeparableConv2D"):
            continue
        weights = layer.get_weights()
        reader = 1 if kind == "SeparableConv2D" else 0  # its pointwise kernel reads them
        drop = np.setdiff1d(np.arange(weights[reader].shape[-2]), found)
        weights[reader][..., drop, :] = 0
        layer.set_weights(weights)
    return twin


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.family)
def test_pruned_model_computes_what_the_kept_channels_do(spec: ModelSpec) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = spec.build(resolution=max(64, spec.test_resolution), num_classes=10)
    if spec.name in UNPRUNABLE:
        with pytest.raises(UserError, match="has no prunable layer"):
            pruning.plan(model, method=Method.L1, ratio=0.5)
        return
    chosen = pruning.plan(model, method=Method.L1, ratio=0.5)
    thinner = pruning.apply(model, chosen)
    assert [layer.name for layer in thinner.layers] == [layer.name for layer in model.layers]
    graph = pruning._Graph(model)
    twin = _masked(model, graph, pruning._kept_by_space(graph, chosen))
    x = np.random.default_rng(1).uniform(-1, 1, (2, *model.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(np.asarray(thinner(x)), np.asarray(twin(x)), atol=1e-5)
    assert analyze_model(thinner).macs < analyze_model(model).macs
    assert thinner.count_params() < model.count_params()
    for group in chosen.groups:  # rounded up to the divisor, never to nothing
        assert 0 < len(group.kept) < group.channels
        assert len(group.kept) % 8 == 0 or group.channels <= 8


def test_ties_residuals_together_and_leaves_the_shuffle_whole() -> None:
    from models_keras import build_model

    v2 = pruning.plan(build_model("mobilenet_v2", resolution=64, num_classes=10),
                      method=Method.L1, ratio=0.5)
    tied = next(g for g in v2.groups if "stage3.unit1.project.conv" in g.producers)
    assert set(tied.producers) == {f"stage3.unit{i}.project.conv" for i in (1, 2, 3)}
    alone = next(g for g in v2.groups if "stage3.unit2.expand.conv" in g.producers)
    assert alone.producers == ("stage3.unit2.expand.conv",)
    shuffle = pruning.plan(build_model("shufflenet_v2", resolution=64, num_classes=10),
                           method=Method.FPGM, ratio=0.5)
    pruned = {p for g in shuffle.groups for p in g.producers}
    assert "stage2.unit2.pw1.conv" in pruned  # inside a branch: free to prune
    # the branch's output goes through the concatenation into the shuffle: left whole
    assert shuffle.left_whole["stage2.unit2.pw2.conv"] == \
        "it feeds stage2.unit2.shuffle (ChannelShuffle)"


def test_l1_and_fpgm_rank_differently() -> None:
    rng = np.random.default_rng(0)
    filters = rng.standard_normal((6, 9))
    filters[0] *= 0.1  # the smallest norm: L1's first to go
    filters[5] = filters[1:5].mean(axis=0)  # at the others' centre: FPGM's first to go
    kernel = filters.T.reshape(3, 3, 1, 6)
    assert int(np.argmin(pruning._scores(kernel, Method.L1))) == 0
    assert int(np.argmin(pruning._scores(kernel, Method.FPGM))) == 5


def test_prune_fine_tunes_and_writes_a_normal_model(digits_model: dict, digits_npz: Path,
                                                    tmp_path: Path, capsys) -> None:
    argv = ["prune", "mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes", "10",
            "--weights", digits_model["weights"], "--data", str(digits_npz), "--ratio", "0.3",
            "--epochs", "2", "--json"]
    code, out, err = run([*argv, "--out", str(tmp_path / "a.keras")], capsys)
    assert code == 0, err
    report = json.loads(out)
    before, pruned, after = report["before"], report["pruned"], report["after"]
    assert after["macs"] < before["macs"] and after["params"] < before["params"]
    assert before["top1"] > 0.6  # the trained model, on a seeded validation split
    assert after["top1"] > pruned["top1"]  # fine-tuning recovers accuracy
    assert report["val_samples"] + report["train_samples"] == 1797
    code, out2, err = run([*argv, "--out", str(tmp_path / "b.keras")], capsys)
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    code, out, err = run(["export", str(tmp_path / "a.keras"), "--format", "tflite",
                          "--out", str(tmp_path / "art"), "--json"], capsys)
    assert code == 0, err
    from mobilectl.core.manifest import read_manifest

    [entry] = read_manifest(tmp_path / "art").artifacts
    made = entry.derivation
    assert (made.source, made.method, made.ratio, made.epochs) == ("mobilenet_v1", "l1", 0.3, 2)
    assert entry.macs == after["macs"]
    code, out, err = run(["eval", str(tmp_path / "art"), "--data", str(digits_npz),
                          "--val-split", "0.2", "--json"], capsys)
    assert code == 0, err
    [row] = json.loads(out)["results"]
    assert row["float_top1"] == pytest.approx(after["top1"], abs=1e-6)  # same data, same model


def test_prune_bad_input(digits_model: dict, digits_npz: Path, tmp_path: Path, capsys) -> None:
    from models_keras.training import digits_pixels

    pixels, labels = digits_pixels()
    np.savez(tmp_path / "three.npz", x=pixels[labels < 3], y=labels[labels < 3])
    base = ["prune", "mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes", "10"]
    data = ["--data", str(digits_npz)]
    out = ["--out", str(tmp_path / "p.keras")]
    cases = [
        ([*base, *data, "--ratio", "1.5", *out], "--ratio 1.5 is not allowed"),
        ([*base, *data, "--ratio", "0", *out], "--ratio 0 is not allowed"),
        ([*base, "--data", str(tmp_path / "three.npz"), *out], "3 classes, but the model has 10"),
        ([*base, *data, "--method", "random", *out], "--method 'random' is not allowed"),
        ([*base, *data, "--out", str(tmp_path / "p.h5")], "a path ending in .keras"),
        (["prune", "shufflenet_v1", "-r", "64", "--num-classes", "10", *data, *out],
         "has no prunable layer"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert message in error_line(code, err), (argv, err)
    assert not (tmp_path / "p.keras").exists()


def test_the_manifest_records_how_the_model_was_made(tmp_path: Path) -> None:
    import keras

    from exporter.pipeline import build_or_load
    from mobilectl.core.manifest import Derivation, Normalization
    from mobilectl.prune import save_keras
    from models_keras import build_model

    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v1", width_multiplier=0.25, resolution=32, num_classes=10)
    made = Derivation("mobilenet_v1", "fpgm", 0.25, 2, "ab" * 32,
                      Normalization((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)))
    save_keras(model, tmp_path / "m.keras", made)
    loaded = build_or_load(str(tmp_path / "m.keras"))
    assert loaded.derivation == made and loaded.normalization == made.normalization
    assert [w.tolist() for w in loaded.model.get_weights()[:2]] == \
        [w.tolist() for w in model.get_weights()[:2]]
