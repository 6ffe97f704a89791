"""`mobilectl export` and `mobilectl quant-report` from the command line: results on
stdout, bad input as one line with exit code 2 and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import error_line, run

SMALL = ["mobilenet_v1", "-w", "0.25", "-r", "32", "--num-classes", "10"]




def test_export_json_on_stdout_progress_on_stderr(digits_model: dict, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["export", *SMALL, "--weights", digits_model["weights"], "--calib",
                          digits_model["calib"], "--calib-samples", "16", "--int8",
                          "--format", "tflite", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)  # nothing but JSON on stdout, even from the converter
    entry = data["artifacts"][0]
    assert entry["path"] == "mobilenet_v1-w0.25-r32-c16_int8.tflite"
    assert entry["calibration"]["source"] == digits_model["calib"]
    assert entry["calibration"]["samples"] == 16
    assert "calibrate" in err and "done in" in err


def test_export_table_and_cli_matches_library_bytes(digits_model: dict, tmp_path: Path) -> None:
    """A fresh process gives the same bytes as the in-process library (determinism
    across processes, hash seeds and name counters)."""
    from exporter.pipeline import ExportOptions, export

    args = [*SMALL, "--weights", digits_model["weights"], "--out", str(tmp_path / "cli")]
    done = subprocess.run([sys.executable, "-m", "mobilectl.cli", "export", *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "mobilenet_v1-w0.25-r32_fp32.tflite" in done.stdout and "ok" in done.stdout
    knobs, weights = digits_model["knobs"], digits_model["weights"]
    lib = export("mobilenet_v1", knobs=knobs, weights=weights, options=ExportOptions(),
                 out=tmp_path / "lib")
    for entry in lib.entries:
        cli_bytes = (tmp_path / "cli" / entry.path).read_bytes()
        assert cli_bytes == (tmp_path / "lib" / entry.path).read_bytes(), entry.path


def test_quant_report_json(digits_model: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["quant-report", *SMALL, "--weights", digits_model["weights"],
                          "--calib", digits_model["calib"], "--calib-samples", "16",
                          "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["layers"][0]["rank"] == 1 and data["layers"][0]["layer"]
    assert isinstance(data["suggest_keep_float"], list)


def _images(folder: Path, count: int, corrupt: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    for i in range(corrupt):
        (folder / f"broken{i}.jpg").write_bytes(b"not a jpeg at all")
    return folder


def test_calibration_folder_with_a_few_corrupt_images(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    calib = _images(tmp_path / "calib" / "nested", 6, corrupt=2).parent
    code, out, err = run(["export", *SMALL, "--int8", "--format", "tflite", "--calib",
                          str(calib), "--calib-samples", "8", "--out", str(tmp_path / "o"),
                          "--json"], capsys)
    assert code == 0, err
    assert "skipped 2 undecodable image(s)" in err
    assert json.loads(out)["artifacts"][0]["calibration"]["kind"] == "images"


def _bad_npy(tmp_path: Path, name: str, array: np.ndarray) -> str:
    path = tmp_path / name
    np.save(path, array, allow_pickle=True)
    return str(path)


BAD = {
    "unknown model": (["export", "mobilenet_v9"], "unknown model 'mobilenet_v9'"),
    "two precisions": (["export", *SMALL, "--int8", "--fp16"], "--int8 and --fp16 exclude"),
    "bad io": (["export", *SMALL, "--int8", "--io", "int16"], "--io 'int16' is not allowed"),
    "bad format": (["export", *SMALL, "--format", "tflite,caffe"], "'caffe' is not allowed"),
    "bad knob": (["export", "mobilenet_v1", "-w", "0.3"], "width_multiplier=0.3 is not allowed"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_options(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, message = BAD[case]
    code, out, err = run([*argv, "--out", str(tmp_path / "o")], capsys)
    assert message in error_line(code, err) and out == ""
    assert not (tmp_path / "o").exists()


def test_bad_calibration_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG garbage")
    nan = np.zeros((4, 32, 32, 3), np.float32)
    nan[1, 2, 3, 0] = np.nan
    cases = [
        (str(tmp_path / "missing"), "no such file or directory"),
        (str(tmp_path / "empty"), "no images"),
        (str(broken), f"no decodable image; the first bad file is {broken / 'a.png'}"),
        (_bad_npy(tmp_path, "shape.npy", np.zeros((4, 16, 16, 3), np.float32)), "shape (4, 16, 16, 3)"),
        (_bad_npy(tmp_path, "dtype.npy", np.zeros((4, 32, 32, 3), np.int64)), "dtype int64"),
        (_bad_npy(tmp_path, "nan.npy", nan), "NaN or inf"),
        (_bad_npy(tmp_path, "pickled.npy", np.array([{"a": 1}], dtype=object)), "without pickle"),
    ]
    for source, message in cases:
        code, out, err = run(["export", *SMALL, "--int8", "--calib", source, "--out",
                              str(tmp_path / "o")], capsys)
        assert message in error_line(code, err), (source, err)
        assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_bad_out_and_model_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    file = tmp_path / "file.txt"
    file.write_text("x")
    code, _, err = run(["export", *SMALL, "--out", str(file)], capsys)
    assert "exists and is not a folder" in error_line(code, err)
    code, _, err = run(["export", *SMALL, "--out", str(file / "sub")], capsys)
    assert "cannot create it" in error_line(code, err)

    inputs = keras.Input((32, 32, 3))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    unsafe.save(tmp_path / "unsafe.keras")
    code, _, err = run(["export", str(tmp_path / "unsafe.keras"), "--out",
                        str(tmp_path / "o")], capsys)
    assert "holds a Lambda layer (arbitrary Python code)" in error_line(code, err)
    assert err.rstrip().endswith("save again")  # the whole sentence, not cut
    code, _, err = run(["export", str(tmp_path / "nothere.keras")], capsys)
    assert "no such file" in error_line(code, err)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_users_keras_file_exports(digits_model: dict, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from models_keras import build_model

    model = build_model("mobilenet_v1", weights=digits_model["weights"], **digits_model["knobs"])
    model.save(tmp_path / "my model.keras")
    code, out, err = run(["export", str(tmp_path / "my model.keras"), "--format", "onnx",
                          "--out", str(tmp_path / "o"), "--json"], capsys)
    assert code == 0, err
    entry = json.loads(out)["artifacts"][0]
    assert entry["path"] == "my_model_fp32.onnx" and entry["verification"]["enforced"]


def test_keep_float_unknown_layer_and_labels(digits_model: dict, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = ["export", *SMALL, "--weights", digits_model["weights"], "--out", str(tmp_path / "o")]
    code, _, err = run([*base, "--int8", "--keep-float", "stem.convv", "--calib-samples", "4"],
                       capsys)
    assert "--keep-float stem.convv: no such layer" in error_line(code, err)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    code, _, err = run([*base, "--labels", str(labels)], capsys)
    assert "--labels has 2 labels, the model has 10 outputs" in error_line(code, err)
    assert not list((tmp_path / "o").glob("*.tflite"))


def test_verification_failure_exit_1(digits_model: dict, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["export", *SMALL, "--weights", digits_model["weights"], "--int8",
                        "--calib", digits_model["calib"], "--format", "onnx", "--min-sqnr",
                        "300", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert "verification failed" in err and "sqnr_db" in err and "below 300 dB by" in err
    assert not (tmp_path / "o").exists()  # nothing written, not even an empty manifest


def test_flex_ops_are_refused_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    inputs = keras.Input((32, 32, 3), name="input")
    resized = keras.layers.Resizing(16, 16, interpolation="bicubic", name="resize")(inputs)
    keras.Model(inputs, resized, name="bicubic").save(tmp_path / "bicubic.keras")
    code, _, err = run(["export", str(tmp_path / "bicubic.keras"), "--format", "tflite",
                        "--out", str(tmp_path / "o")], capsys)
    line = error_line(code, err)
    assert "needs TensorFlow ops outside TFLite's builtins: ResizeBicubic" in line
    assert not (tmp_path / "o").exists()
