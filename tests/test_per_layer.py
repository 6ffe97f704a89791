"""Per-layer latency for real: every op timed on this machine (TFLite ops cut from the
flatbuffer, onnxruntime's session profiling), on the test phone (benchmark_model's op
tables), tied to Keras layers and joined with the file's MACs; and the int8 TFLite
graphs XNNPACK runs whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import run


@pytest.fixture(scope="module")
def v3_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNet V3 Small at 64 px, TFLite fp32 + int8 and ONNX fp32, with a manifest.
    Its batch norms' statistics are set from sample inputs, so activations keep the
    scale of a trained network's (the initial statistics shrink them layer by layer
    until LiteRT refuses int8 ops on their tiny scales)."""
    import keras

    from exporter.options import Thresholds
    from exporter.pipeline import ExportOptions, export
    from models_keras import build_model
    from models_keras.training import trained_scales

    out = tmp_path_factory.mktemp("v3")
    keras.utils.set_random_seed(0)
    model = build_model("mobilenet_v3_small", resolution=64)
    trained_scales(model, np.random.default_rng(0).uniform(
        -1, 1, (8, 64, 64, 3)).astype(np.float32))
    weights = out.parent / "v3.weights.h5"
    model.save_weights(weights)
    loose = {"thresholds": Thresholds(min_cosine=-1.0, min_sqnr_db=-200.0, min_top1=0.0)}
    for options in (ExportOptions(held_out=2, **loose), ExportOptions(
            precision="int8", formats=("tflite",), calib_samples=8, held_out=2, **loose)):
        export("mobilenet_v3_small", knobs={"resolution": 64}, weights=str(weights),
               options=options, out=out)
    return out


def _file(folder: Path, suffix: str) -> Path:
    [path] = [p for p in folder.iterdir() if p.name.endswith(suffix)]
    return path


def _by_artifact(out: str) -> dict[str, dict]:
    return {m["artifact"]: m for m in json.loads(out)["measurements"]}


def test_host_per_layer_tflite_and_onnx(v3_models: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(["profile", str(v3_models / "manifest.json"), "--per-layer",
                          "--runs", "5", "--warmup", "1", "--threads", "1", "--out",
                          str(tmp_path), "--json"], capsys)
    assert code == 0, err
    found = _by_artifact(out)
    assert len(found) == 3
    for name, m in found.items():
        assert m["init_ms"] > 0 and m["first_inference_ms"] > 0 and m["peak_memory_mb"] > 0
        table = m["per_layer"]
        rows = table["rows"]
        assert rows and table["sum_ms"] > 0 and 0.2 < table["parts_over_whole"] < 5, name
        assert all(r["ms"] is not None and r["ms"] >= 0 for r in rows)
        assert abs(sum(r["share"] for r in rows) - 1) < 1e-6
        convs = [r for r in rows if r["macs"] > 0]
        assert convs and all(r["gmacs"] > 0 and r["layers"] for r in convs), name
        assert sum(r["macs"] for r in rows) == pytest.approx(m["macs"], rel=0.01), name
        mapped = {layer for r in rows for layer in r["layers"]}
        assert {"stem.conv", "stage1.unit1.dw.conv", "classifier.fc"} <= mapped, name
        assert set(table["unmapped"]) == {r["name"] for r in rows if not r["layers"]}
    tflite = found[_file(v3_models, "fp32.tflite").name]["per_layer"]
    assert {r["kernel"] for r in tflite["rows"]} == {"xnnpack"}  # float: every op in XNNPACK
    assert [r["ops"] for r in tflite["rows"]] == [[i] for i in range(len(tflite["rows"]))]
    onnx_rows = found[_file(v3_models, "fp32.onnx").name]["per_layer"]["rows"]
    fused = [r for r in onnx_rows if any({f"{p}.conv", f"{p}.bn", f"{p}.act"} <= set(r["layers"])
                                         for p in {n.rpartition(".")[0] for n in r["layers"]})]
    assert fused, "onnxruntime's conv fused with its activation is one row naming all three"
    report = (tmp_path / "profile.md").read_text()
    assert f"## Per layer: {_file(v3_models, 'fp32.onnx').name}" in report
    assert "| stem.conv" in report


def test_per_layer_table_in_the_terminal(v3_models: Path, tmp_path: Path, capsys) -> None:
    import io

    from rich.console import Console

    from mobilectl.render import per_layer_table

    code, out, err = run(["profile", str(_file(v3_models, "fp32.onnx")), "--per-layer",
                          "--runs", "3", "--warmup", "1", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "slowest 15 of" in out and "ops sum to" in out and "profile.html" in out
    [m] = json.loads((tmp_path / "profile.json").read_text())["measurements"]
    screen = Console(width=80, file=io.StringIO(), record=True)
    screen.print(per_layer_table(m, width=80))
    lines = screen.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) > 15
    assert any("{conv,bn,act}" in line for line in lines)  # whole names, folded per block


def test_int8_tflite_runs_in_xnnpack(v3_models: Path) -> None:
    """Hard-swish is written in ops XNNPACK takes in int8: no op of the int8 file falls
    back to LiteRT's builtin kernels except the two XNNPACK lacks in int8 (MINIMUM, the
    hard-sigmoid's clamp at 1, and SOFTMAX), and no HARD_SWISH is left; the float file
    keeps HARD_SWISH (XNNPACK runs it in float)."""
    from device_profiles.op_bench import single_op_models
    from exporter import tflite as tflite_export

    int8 = _file(v3_models, "int8.tflite").read_bytes()
    assert "HARD_SWISH" not in tflite_export.op_types(int8)
    assert "HARD_SWISH" in tflite_export.op_types(_file(v3_models, "fp32.tflite").read_bytes())
    builtin = {kind for kind, _, cut in single_op_models(int8) if not _delegated(cut)}
    assert builtin <= {"MINIMUM", "SOFTMAX"}, builtin


def _delegated(cut: bytes) -> bool:
    from ai_edge_litert.interpreter import Interpreter

    runtime = Interpreter(model_content=cut)
    runtime.allocate_tensors()
    return "DELEGATE" in {d["op_name"] for d in runtime._get_ops_details()}  # noqa: SLF001


@pytest.mark.parametrize("name", ["shufflenet_v1", "espnetv2"])
def test_grouped_convs_and_prelu_for_xnnpack(name: str) -> None:
    """Grouped convs convert to one grouped CONV_2D with the bn folded in (no SPLIT,
    no bn MUL/ADD), PReLU to ops XNNPACK takes in int8; same numbers as Keras."""
    import keras

    from exporter import tflite as tflite_export
    from models_keras import build_model
    from models_keras.training import trained_scales
    from mobilectl.core.types import Precision

    keras.utils.set_random_seed(0)
    model = build_model(name, resolution=64, num_classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (6, 64, 64, 3)).astype(np.float32)
    trained_scales(model, x)  # bn shifts away from zero, as in a trained model
    expected = np.asarray(model(x[:2], training=False))
    fp32 = tflite_export.convert(model)
    np.testing.assert_allclose(tflite_export.run(fp32, x[:2]), expected, atol=1e-4)
    ops = tflite_export.op_types(fp32)
    groups = sum(getattr(layer, "groups", 1) > 1 for layer in model.layers)
    assert groups and ops.count("CONV_2D") + ops.count("DEPTHWISE_CONV_2D") >= groups
    assert "SPLIT" not in ops or name == "espnetv2"  # ESPNetv2 splits its EESP branches
    int8 = tflite_export.convert(model, precision=Precision.INT8, calibration=x)
    assert "PRELU" not in tflite_export.op_types(int8)
    if name == "shufflenet_v1":
        assert ops.count("MUL") == 0 and "RELU" not in tflite_export.op_types(int8)


def test_html_report_and_model_explorer_node_data(v3_models: Path, tmp_path: Path,
                                                  capsys) -> None:
    """One self-contained HTML page (charts inlined, nothing fetched), with the int8
    against float chart, and node data Model Explorer reads and can place on its graph
    of the same file."""
    import dacite
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter
    from model_explorer.node_data_builder import GraphNodeData

    tflites = sorted(str(p) for p in v3_models.glob("*.tflite"))
    code, out, err = run(["profile", *tflites, "--int8", "--runs", "3", "--warmup", "1",
                          "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    assert err.count("int8 error per layer needs the Keras model") == 2  # files, not names
    summary = json.loads(out)
    page = Path(summary["html"]).read_text()
    assert page.count("<img ") == 5  # two artifacts x (bars, scatter) + int8 vs float
    assert page.count("<th>int8 / float</th>") == 1  # the int8 table, beside its float twin
    assert f"int8 vs {_file(v3_models, 'fp32.tflite').name}" in page
    [versus] = summary["int8_vs_float"].values()
    assert versus["float"] == _file(v3_models, "fp32.tflite").name and versus["layers"]
    first = versus["layers"][0]  # the layer int8 costs most extra time on, first
    assert first["ms"] - first["reference_ms"] >= max(
        p["ms"] - p["reference_ms"] for p in versus["layers"]) - 1e-12
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for path in summary["node_data"]:
        data = json.loads(Path(path).read_text())
        dacite.from_dict(GraphNodeData, data, config=dacite.Config(strict=True))
        model = v3_models / Path(path).name.removesuffix(".node_data.json")
        graph = BuiltinTfliteFlatbufferAdapter().convert(str(model), {})
        names = {a["value"] for g in graph["graphCollections"][0].graphs for n in g["nodes"]
                 for m in n.get("outputsMetadata", []) for a in m["attrs"]
                 if a["key"] == "tensor_name"}
        assert data["results"] and set(data["results"]) <= names


def test_profile_int8_against_float_per_layer(tmp_path: Path, capsys) -> None:
    """``--int8`` on a registry name: exported at both precisions, every int8 row beside
    the float time of the same layers, TFLite rows with the quantization debugger's
    error of their op (found by output tensor), flagged where int8 is slower; the
    error overlay validates as Model Explorer node data."""
    import dacite
    from model_explorer.node_data_builder import GraphNodeData

    code, out, err = run(["profile", "mobilenet_v3_small", "--int8", "--runs", "3",
                          "--warmup", "1", "--threads", "1", "--out", str(tmp_path), "--json"],
                         capsys)
    assert code == 0, err
    summary = json.loads(out)
    found = {(m["fmt"], m["precision"]): m for m in summary["measurements"]}
    assert set(found) == {(f, p) for f in ("tflite", "onnx") for p in ("fp32", "int8")}
    for fmt in ("tflite", "onnx"):
        rows = found[fmt, "int8"]["per_layer"]["rows"]
        paired = [r for r in rows if r["float_ms"] is not None]
        assert len(paired) >= 0.8 * sum(bool(r["layers"]) for r in rows), fmt
        for r in paired:
            assert r["versus_float"] == pytest.approx(r["set_ms"] / r["float_ms"])
            slower = any(f.startswith("int8 ") and "x float" in f for f in r["flags"])
            assert slower == (r["versus_float"] > 1.1), r
        assert all(r["float_ms"] is None for r in found[fmt, "fp32"]["per_layer"]["rows"])
    tflite = found["tflite", "int8"]["per_layer"]["rows"]
    errors = [r["rmse_steps"] for r in tflite if r["rmse_steps"] is not None]
    assert len(errors) >= 0.8 * sum(r["kind"] != "QUANTIZE" for r in tflite)
    assert len(set(errors)) > len(errors) / 2  # per op (by tensor), not one value per layer
    assert all(r["rmse_steps"] is None for r in found["onnx", "int8"]["per_layer"]["rows"])
    [overlay] = [p for p in summary["node_data"] if p.endswith(".int8_error.node_data.json")]
    data = json.loads(Path(overlay).read_text())
    dacite.from_dict(GraphNodeData, data, config=dacite.Config(strict=True))
    assert len(data["results"]) == len(errors)
    assert "int8 error (steps)" in (tmp_path / "profile.md").read_text()


def test_per_layer_of_a_file_made_elsewhere(tmp_path: Path, capsys) -> None:
    """A .tflite from the plain TF converter (keras.applications' MobileNet V2, no
    manifest, no mobilectl metadata): per-op rows under its own op and layer names, MACs
    read from the file."""
    import keras
    import tensorflow as tf

    net = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35)
    inputs = keras.Input(batch_shape=(1, 96, 96, 3))
    model = keras.Model(inputs, net(inputs))  # a fixed batch: LiteRT's tool here needs it
    path = tmp_path / "elsewhere.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    capsys.readouterr()  # what the converter printed
    code, out, err = run(["profile", str(path), "--per-layer", "--runs", "3", "--warmup", "1",
                          "--out", str(tmp_path / "report"), "--json"], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    rows = m["per_layer"]["rows"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= {r["kind"] for r in rows}
    assert sum(r["macs"] for r in rows) > 10_000_000
    assert {"Conv1", "expanded_conv_depthwise", "predictions"} <= {
        n for r in rows for n in r["layers"]}
