"""Latency prediction from measured kernels: calibration on this machine and over adb,
the kernel table, prediction per layer, and its use in profile, build and models."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import error_line, run

SMALL = ["mobilenet_v1", "-w", "0.25", "-r", "64"]


@pytest.fixture(scope="module")
def host_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user cache with a host kernel table of the grid's first batch, calibrated for
    real by the CLI (the first batch always runs, whatever the budget)."""
    from mobilectl.cli import main

    root = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root)
    try:
        with pytest.raises(SystemExit) as done:
            main(["device", "calibrate", "--device", "host", "--budget-min", "0.01", "--json"])
        assert done.value.code in (0, None)
        yield root
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


def _table(root: Path, device: str = "host") -> dict:
    return json.loads((root / "mobilectl" / "kernels" / f"{device}.json").read_text())


def test_grid_is_fixed_covers_every_kind_and_ids_are_unique() -> None:
    from mobilectl.kernel_grid import KINDS, grid

    blocks = grid()
    assert [b.id for b in blocks] == [b.id for b in grid()]
    assert len({b.id for b in blocks}) == len(blocks)
    assert [b.kind for b in blocks[:len(KINDS)]] == list(KINDS)  # round-robin: all kinds first
    assert max(b.cout for b in blocks) >= 1000 and max(b.hw for b in blocks) >= 112


def _zoo_families():
    from models_keras.registry import family_representatives

    return family_representatives()


@pytest.mark.parametrize("spec", _zoo_families(), ids=lambda s: s.family)
def test_the_grid_covers_each_familys_first_conv_and_its_pools(spec) -> None:
    """Generated from the registry: the first conv reads the image's 3 channels, a
    shape the grid's random channels (8 and up) never draw, and each square pool of the
    family has a grid pool of its type, size and stride."""
    from mobilectl.kernel_grid import grid

    model = spec.build(resolution=spec.default_resolution)
    blocks = grid()
    first = next(layer for layer in model.layers if type(layer).__name__ == "Conv2D")
    assert first.input.shape[-1] == 3
    assert any(b.kind == "stem" and b.cin == 3 and (b.k, b.k) == first.kernel_size
               and (b.stride, b.stride) == first.strides for b in blocks), first.name
    pools = {(type(layer).__name__.startswith("Max"), layer.pool_size, layer.strides)
             for layer in model.layers if "Pooling2D" in type(layer).__name__
             and "Global" not in type(layer).__name__}
    covered = {(b.act == "max", (b.k, b.k), (b.stride, b.stride)) for b in blocks
               if b.kind in ("pool", "maxpool", "padpool")}
    square = {p for p in pools if p[1][0] == p[1][1]}
    assert square <= covered


def test_kernel_features_of_a_grouped_strided_conv() -> None:
    import keras

    from device_profiles.kernels import kernel_ops
    from exporter import tflite
    from models_keras.blocks import conv_bn

    inputs = keras.Input((16, 16, 24))
    model = keras.Model(inputs, conv_bn(inputs, 48, 3, strides=2, groups=3, name="k"))
    [op] = kernel_ops(tflite.convert(model))
    assert op.kernel == "CONV_2D.grouped:fp32"
    assert (op.feature("in_channels"), op.feature("out_channels"), op.feature("groups")) == (24, 48, 3)
    assert (op.feature("stride"), op.feature("kernel_area"), op.feature("out_hw")) == (2, 9, 64)
    assert op.feature("macs") == 8 * 8 * 48 * 9 * 8  # out elements x k*k x cin per group
    assert op.feature("weight_bytes") >= 48 * 9 * 8 * 4


def test_calibrate_writes_the_table_with_its_runtime_and_resumes(host_cache, capsys,
                                                                 monkeypatch) -> None:
    from importlib import metadata

    monkeypatch.setenv("XDG_CACHE_HOME", str(host_cache))
    first = _table(host_cache)
    assert first["runtime"] == f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    assert first["threads"] == 2 and first["floor_ms"] > 0 and first["state"]["first"]["cores"]
    assert len(first["blocks"]) == 12
    from mobilectl.calibrate import PROCESSES, kernel_ms

    for row in first["rows"]:  # each process's time is kept, and the kernel's is made of them
        assert len(row["processes_ms"]) == PROCESSES
        assert row["ms"] == kernel_ms(row["processes_ms"])
    kernels = {r["kernel"] for r in first["rows"]}
    assert {"CONV_2D.1x1:fp32", "CONV_2D.1x1:int8", "DEPTHWISE_CONV_2D:int8", "ADD:int8",
            "TRANSPOSE:fp32", "FULLY_CONNECTED:int8"} <= kernels
    code, out, err = run(["device", "calibrate", "--budget-min", "0.01", "--json"], capsys)
    assert code in (0, None), err
    report = json.loads(out)
    assert report["measured_now"] == 12 and report["blocks"] == 24 and report["remaining"] > 0
    second = _table(host_cache)
    kept = [r for r in second["rows"] if r["block"] in first["blocks"]]
    assert kept == first["rows"]  # resumed: the first batch is not measured again
    assert {f["kernel"] for f in report["fits"]} == {r["kernel"] for r in second["rows"]}
    assert second["chains"], "the second batch holds the first chain, timed whole"
    assert any(c["block"].startswith("net-") for c in second["chains"])  # and a zoo-sized one


def test_predict_per_layer_and_measured(host_cache, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(host_cache))
    code, out, err = run(["predict", *SMALL, "--measure", "--json"], capsys)
    assert code in (0, None), err
    [model] = json.loads(out)["models"]
    assert model["model"] == "mobilenet_v1-w0.25-r64" and model["macs"] > 0
    assert model["predicted_ms"] > 0 and model["measured_ms"] > 0
    assert model["error_pct"] == pytest.approx(
        100 * (model["predicted_ms"] - model["measured_ms"]) / model["measured_ms"])
    layers = model["layers"]
    assert any("stage1.unit1.dw.conv" in r["layers"] for r in layers)
    assert sum(r["ms"] or 0 for r in layers) + model["floor_ms"] == pytest.approx(model["predicted_ms"])
    code, out, err = run(["predict", *SMALL], capsys)
    assert code in (0, None), err
    assert "predicted latency on host" in out and "lighter rows not shown" in out


def test_a_kernel_without_a_model_makes_a_named_lower_bound(host_cache, tmp_path, capsys,
                                                            monkeypatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(host_cache, cache)
    path = cache / "mobilectl" / "kernels" / "host.json"
    table = json.loads(path.read_text())
    table["rows"] = [r for r in table["rows"] if not r["kernel"].startswith("DEPTHWISE")]
    table["runtime"] = "ai-edge-litert 0.0.1"
    path.write_text(json.dumps(table))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    code, out, err = run(["predict", *SMALL, "--json"], capsys)
    assert code in (0, None), err
    [model] = json.loads(out)["models"]
    assert model["lower_bound"] and model["missing_kernels"] == ["DEPTHWISE_CONV_2D:fp32"]
    assert "no kernel model for DEPTHWISE_CONV_2D:fp32" in err and "lower bound" in err
    assert "ai-edge-litert 0.0.1" in err and "ai-edge-litert 2." in err  # both runtimes named
    code, out, err = run(["predict", *SMALL], capsys)
    assert ">=" in out


@pytest.mark.parametrize("argv, expected", [
    (["predict", "mobilenet_v1", "--device", "pixel"],
     "no kernel table for device 'pixel'"),
    (["predict", "mobilenet_v1", "--precision", "fp16"], "--precision 'fp16' is not allowed"),
    (["predict", "model.onnx"], "model.onnx: no such file"),
    (["device", "calibrate", "--budget-min", "0"], "--budget-min 0 is not allowed"),
    (["device", "calibrate", "--device", "nope"], "unknown device profile 'nope'"),
    (["models", "--device", "pixel"], "make one: mobilectl device calibrate --device pixel"),
])
def test_bad_input(argv, expected, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, _, err = run(argv, capsys)
    assert expected in error_line(code, err)
    assert not (tmp_path / "mobilectl" / "kernels").exists() or argv[0] != "device"


def test_calibrate_without_a_phone_stops_before_converting(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "1")  # no adb server: no device
    code, _, err = run(["device", "calibrate", "--device", "pixel", "--benchmark-binary",
                        __file__], capsys)
    error_line(code, err)
    assert "build, convert" not in err and not (tmp_path / "mobilectl" / "kernels").exists()


def test_onnx_is_refused_with_the_reason(host_cache, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(host_cache))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not empty")
    code, _, err = run(["predict", str(model)], capsys)
    assert "prediction covers TFLite" in error_line(code, err)


def test_profile_shows_the_prediction_next_to_the_measurement(host_cache, tmp_path, capsys,
                                                              monkeypatch) -> None:
    from exporter.pipeline import ExportOptions, export

    monkeypatch.setenv("XDG_CACHE_HOME", str(host_cache))
    export("mobilenet_v1", knobs={"resolution": 64, "width_multiplier": 0.25},
           options=ExportOptions(formats=("tflite",), held_out=2), out=tmp_path / "a")
    [model] = (tmp_path / "a").glob("*.tflite")
    code, out, err = run(["profile", str(model), "--min-reps", "1", "--runs", "5", "--per-layer",
                          "--out", str(tmp_path / "p"), "--json"], capsys)
    assert code in (0, None), err
    summary = json.loads(out)
    found = summary["predictions"][model.name]
    measured = summary["measurements"][0]["latency"]["median_ms"]
    assert found["predicted_ms"] > 0
    assert found["error_pct"] == pytest.approx(100 * (found["predicted_ms"] - measured) / measured)
    assert isinstance(found["far_layers"], list)


def test_zoo_sorted_by_predicted_latency(host_cache, monkeypatch) -> None:
    from mobilectl.core.types import Precision
    from mobilectl.predict import zoo_latencies

    monkeypatch.setenv("XDG_CACHE_HOME", str(host_cache))
    said: list[str] = []
    found = zoo_latencies("host", precision=Precision.FP32, progress=said.append,
                          names=("effnet", "flattened_net"))
    assert set(found) == {"effnet", "flattened_net"} and all(p.total_ms > 0 for p in found.values())
    assert said == ["convert effnet to TFLite fp32", "convert flattened_net to TFLite fp32"]
    assert list((host_cache / "mobilectl" / "kernels" / "zoo").glob("effnet-fp32-*.json"))
    again = zoo_latencies("host", precision=Precision.FP32, progress=said.append,
                          names=("effnet", "flattened_net"))
    assert len(said) == 2  # the ops come from the cache: nothing converted again
    assert {k: p.total_ms for k, p in again.items()} == {k: p.total_ms for k, p in found.items()}


def test_build_checks_a_phone_budget_by_prediction_without_a_device(
        host_cache, tmp_path, capsys, monkeypatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(host_cache, cache)
    kernels = cache / "mobilectl" / "kernels"
    table = json.loads((kernels / "host.json").read_text())
    (kernels / "pixel.json").write_text(json.dumps({**table, "device": "pixel"}))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "1")  # no adb server: no device connected
    (tmp_path / "mobilectl.toml").write_text("""
[[artifact]]
name = "net"
model = "mobilenet_v1"
knobs = { width_multiplier = 0.25, resolution = 64, num_classes = 10 }
formats = ["tflite"]
[artifact.budgets.pixel]
max_latency_ms = 1000
""")
    argv = ["build", str(tmp_path / "mobilectl.toml"), "--out", str(tmp_path / "dist"),
            "--cache", str(tmp_path / "bc"), "--json"]
    code, out, err = run(argv, capsys)
    assert code in (0, None), err
    [check] = json.loads(out)["jobs"][0]["budgets"]
    assert check["predicted"] and check["ok"] and 0 < check["value"] < 1000
    assert "predicted" in check["text"] and "not measured" in check["text"]
    assert "(predicted)" in (tmp_path / "dist" / "summary.md").read_text()
    spec = (tmp_path / "mobilectl.toml").read_text().replace("1000", "0.001")
    (tmp_path / "mobilectl.toml").write_text(spec)
    code, out, err = run(argv, capsys)
    assert code == 1
    [check] = json.loads(out)["jobs"][0]["budgets"]
    assert check["predicted"] and not check["ok"] and "over 0.001 ms" in check["text"]


def test_calibrate_over_adb_on_the_test_device(connect_device, benchmark_binary, tmp_path,
                                               capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    device = connect_device()
    code, out, err = run(["device", "calibrate", "--device", "pixel", "--serial", device.serial,
                          "--benchmark-binary", str(benchmark_binary), "--budget-min", "0.01",
                          "--json"], capsys)
    assert code in (0, None), err
    report = json.loads(out)
    assert report["runtime"].startswith("benchmark_model sha256:") and report["blocks"] == 12
    table = _table(tmp_path, "pixel")
    assert table["state"]["last"]["serial"] == f"pixel:{device.serial}"
    assert {"CONV_2D.1x1:int8", "DEPTHWISE_CONV_2D:fp32"} <= {r["kernel"] for r in table["rows"]}
    assert all(r["ms"] > 0 for r in table["rows"])


def test_the_in_graph_form_is_chosen_by_leave_one_out_on_the_chains() -> None:
    import numpy as np

    from device_profiles.predictor import FORMS, _leave_one_out

    rng = np.random.default_rng(0)
    alone = rng.uniform(0.1, 5.0, 20)
    ops, moved = rng.integers(10, 80, 20) / 1e3, rng.uniform(0.1, 20, 20)
    x = np.column_stack([alone, ops, moved])
    scaled = 1.3 * alone  # whole = 1.3 x the kernels alone: one scale explains it
    errors = {f.__name__: _leave_one_out(f, x, scaled) for f in FORMS}
    assert errors["_scale_form"] < 1e-9 < errors["_alone_form"]
    lined = 0.9 * alone + 2.0 * ops + moved / 50  # per-op cost and bytes: the line
    errors = {f.__name__: _leave_one_out(f, x, lined) for f in FORMS}
    assert min(errors, key=errors.get) == "_line_form" and errors["_line_form"] < 1e-6


def test_a_richer_in_graph_form_must_win_by_more_than_the_margin() -> None:
    from device_profiles.predictor import FORM_MARGIN, FORMS, _simplest

    alone, scale, line = FORMS
    near = {alone: 0.176, scale: 0.167, line: 0.167 - FORM_MARGIN / 2}  # a tie: one scale
    assert _simplest(near) is scale
    far = {alone: 0.30, scale: 0.20, line: 0.20 - 2 * FORM_MARGIN}  # the line wins clearly
    assert _simplest(far) is line
    assert _simplest({alone: 0.10, scale: 0.095, line: 0.092}) is alone


def test_an_int8_mul_outside_xnnpacks_scales_is_its_own_kernel_type() -> None:
    """Hard-swish of small int8 activations: the product of the input scales is far
    below the output's, which XNNPACK's delegate refuses (TFLite's builtin kernel)."""
    import numpy as np

    from device_profiles.kernels import kernel_ops
    from exporter import tflite
    from mobilectl.core.types import Precision
    from mobilectl.kernel_grid import Block, keras_block

    def muls(scale_exponent: int) -> list[str]:
        model = keras_block(Block("act_small", 8, 16, 16, k=scale_exponent, act="hard_swish"))
        data = np.random.default_rng(0).normal(size=(8, 8, 8, 16)).astype("float32")
        flat = tflite.convert(model, precision=Precision.INT8, calibration=data)
        return sorted(op.kernel for op in kernel_ops(flat) if op.op == "MUL")

    assert "MUL.ref:int8" in muls(5)
    assert "MUL.ref:int8" not in muls(0)  # inputs of the usual size: XNNPACK's multiply


def test_predict_names_the_ops_that_fall_back_to_the_builtin_kernel() -> None:
    from device_profiles.kernels import FEATURES, KernelOp
    from device_profiles.predictor import OpPrediction, Prediction
    from mobilectl.predict import fallback_notes

    def op(i: int, kernel: str) -> KernelOp:
        return KernelOp(i, kernel.split(".")[0].split(":")[0], kernel, f"t{i}", (0.0,) * len(FEATURES))

    ops = (OpPrediction(op(0, "MUL:int8"), 0.1), OpPrediction(op(1, "MUL.ref:int8"), 0.5),
           OpPrediction(op(2, "MUL.ref:int8"), 0.25))
    [note] = fallback_notes("m", Prediction(ops, 0.15))
    assert "2 int8 MUL op(s)" in note and "0.75 ms of 1.00 ms" in note
    assert fallback_notes("m", Prediction(ops[:1], 0.0)) == []


def test_only_chains_of_the_zoos_size_fit_the_in_graph_stage() -> None:
    from device_profiles.kernel_table import ChainRow
    from device_profiles.predictor import MIN_CHAIN_MS, MIN_CHAINS, _sized

    small = [ChainRow(f"chain-{i}", (), MIN_CHAIN_MS / 5) for i in range(10)]
    long = [ChainRow(f"net-{i}", (), MIN_CHAIN_MS * (1 + i)) for i in range(MIN_CHAINS)]
    assert _sized(small + long) == long
    assert _sized(small + long[1:]) == small + long[1:]  # too few long ones: every chain


def test_an_int8_swish_is_one_kernel_cut_and_timed_as_one(tmp_path) -> None:
    """XNNPACK runs an int8 ``MUL(x, LOGISTIC(x))`` as one kernel (the MUL costs nothing
    after its sigmoid): the calibration cuts the pair together as ``SWISH:int8``; in
    float the two ops stay two kernels; a squeeze-excite gate (the sigmoid of another
    tensor) is no swish."""
    from device_profiles.kernels import kernel_ops
    from mobilectl.calibrate import cut_block
    from mobilectl.kernel_grid import Block

    kernels = {k.kernel: k for k in cut_block(Block("swish", 8, 16, 16, act="swish"), tmp_path)}
    assert set(kernels) == {"QUANTIZE:fp32", "DEQUANTIZE:int8", "LOGISTIC:fp32", "MUL:fp32",
                            "SWISH:int8"}
    alone = kernel_ops((tmp_path / kernels["SWISH:int8"].file).read_bytes())
    assert [(o.op, o.kernel) for o in alone] == [("LOGISTIC", "FUSED:int8"), ("MUL", "SWISH:int8")]
    assert alone[1].group == (0,) and alone[0].fused
    (tmp_path / "se").mkdir()
    se = {k.kernel for k in cut_block(Block("se", 8, 16, 16, act="sigmoid"), tmp_path / "se")}
    assert {"MUL:int8", "LOGISTIC:int8"} <= se and "SWISH:int8" not in se


def test_a_fused_op_costs_nothing_and_is_no_missing_kernel(host_cache) -> None:
    from device_profiles import kernel_table
    from device_profiles.kernels import FEATURES, KernelOp
    from device_profiles.predictor import Predictor

    table = kernel_table.load(host_cache / "mobilectl" / "kernels" / "host.json")
    row = next(r for r in table.rows if r.kernel == "ADD:int8")
    ops = [KernelOp(0, "LOGISTIC", "FUSED:int8", "t0", (1e6,) * len(FEATURES)),
           KernelOp(1, "ADD", "ADD:int8", "t1", row.features)]
    prediction = Predictor(table).predict(ops)
    assert [p.ms for p in prediction.ops][0] == 0.0 and prediction.ops[1].ms > 0
    assert not prediction.lower_bound
