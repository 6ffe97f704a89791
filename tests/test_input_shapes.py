"""`mobilectl profile --input-shape`: models with dynamic dimensions are measured at
the shape the user gives, on the host (onnxruntime) and on an adb device
(benchmark_model's --input_layer_shape); without one, a one-line error names the input
and the flag, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import error_line, run


@pytest.fixture(scope="module")
def dynamic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small conv net with a (None, None, None, 3) input as .onnx and .tflite."""
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from mobilectl.core.tfenv import third_party_output

    root = tmp_path_factory.mktemp("dynamic")
    inp = keras.Input((None, None, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(4, name="fc")(x))
    spec = (tf.TensorSpec((None, None, None, 3), tf.float32, name="input"),)
    with third_party_output():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    onnx.save(proto, root / "dyn.onnx")
    (root / "dyn.tflite").write_bytes(flatbuffer)
    return {"onnx": root / "dyn.onnx", "tflite": root / "dyn.tflite"}


def _host(path: Path, out: Path, *extra: str) -> list[str]:
    return ["profile", str(path), "--runs", "3", "--warmup", "1", "--out", str(out),
            "--json", *extra]


def test_host_onnx_at_the_given_shape(dynamic_models: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(*run(_host(dynamic_models["onnx"], tmp_path / "a"), capsys)[::2])
    assert "dyn.onnx: input 'input' has a dynamic shape (?, ?, ?, 3); give --input-shape" in line
    assert not (tmp_path / "a").exists()
    code, out, err = run(_host(dynamic_models["onnx"], tmp_path / "b", "--input-shape",
                               "1,96,96,3"), capsys)
    assert code in (0, None), err
    [m] = json.loads(out)["measurements"]
    assert m["latency"]["runs"] == 3 * 3 and m["latency"]["median_ms"] > 0  # 3 reps
    for shape, text in (("x:1,8,8,3", "has no input 'x'"),
                        ("1,8,8", "does not fit input 'input' of dyn.onnx: (?, ?, ?, 3)"),
                        ("1,8,8,4", "does not fit"), ("1,0,8,3", "is not allowed")):
        line = error_line(*run(_host(dynamic_models["onnx"], tmp_path / "c", "--input-shape",
                                     shape), capsys)[::2])
        assert text in line, line
    assert not (tmp_path / "c").exists()


def test_host_tflite_says_where_it_can_run(dynamic_models: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    line = error_line(*run(_host(dynamic_models["tflite"], tmp_path / "a", "--input-shape",
                                 "1,32,32,3"), capsys)[::2])
    assert "cannot set the shape of a dynamic input; profile it on an adb device" in line


def test_adb_device_runs_the_given_shape(dynamic_models: dict[str, Path], connect_device,
                                         benchmark_binary, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    device = connect_device()
    argv = ["profile", str(dynamic_models["tflite"]), "--device", "pixel", "--serial",
            device.serial, "--benchmark-binary", str(benchmark_binary), "--runs", "3",
            "--warmup", "1", "--out", str(tmp_path), "--json"]
    line = error_line(*run(argv, capsys)[::2])
    assert "has a dynamic shape (?, ?, ?, 3); give --input-shape" in line
    code, out, err = run([*argv, "--input-shape", "1,64,64,3"], capsys)
    assert code in (0, None), err
    [m] = json.loads(out)["measurements"]
    assert m["latency"]["runs"] == 3 * 3  # three repetitions of three runs
    commands = device.taskset_log()
    assert len(commands) == 3  # one per repetition
    for command in commands:
        assert "--input_layer=serving_default_input:0" in command
        assert "--input_layer_shape=1,64,64,3" in command
