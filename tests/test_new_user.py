"""What a new user met on a clean clone (issue 13), each pinned by a test: wrong or
silent results, tracebacks and third-party noise, misleading messages, friction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from helpers import run

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a fresh process (real file descriptors)."""
    return subprocess.run([sys.executable, "-m", "mobilectl.cli", *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ, **(env or {})})


def test_zero_or_constant_output_is_a_failed_verification() -> None:
    from exporter.pipeline import checks
    from exporter.options import Thresholds
    from mobilectl.core.types import Precision
    from quant.metrics import compare

    reference = np.random.default_rng(0).random((8, 10)).astype(np.float32)
    zeros = compare(reference, np.zeros_like(reference))
    assert zeros["cosine"] == 0.0 and zeros["constant_output"] == 1.0
    failed = [c.metric for c in checks(Precision.INT8, zeros, Thresholds()) if not c.ok]
    assert "constant_output" in failed and "cosine" in failed
    same = compare(reference, np.tile(reference[:1], (8, 1)))
    assert same["constant_output"] == 1.0  # the same non-zero row for every input
    assert compare(np.zeros((4, 3)), np.zeros((4, 3)))["cosine"] == 1.0


def test_random_init_int8_says_why_it_is_useless(tmp_path: Path) -> None:
    done = _cli("export", "shufflenet_v2", "-r", "32", "--int8", "--format", "tflite",
                "--calib-samples", "8", "--out", str(tmp_path), env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    warning = " ".join(done.stderr.split())
    assert "the same output for every input" in warning and "--weights FILE" in warning
    assert "constant output" in done.stdout and "cos 1.0000" not in done.stdout


def test_precision_is_read_from_the_tensors_not_the_name(tmp_path: Path) -> None:
    from device_profiles.inspect import precision_of
    from exporter.pipeline import ExportOptions, export
    from mobilectl.core.types import Format

    for precision in ("fp32", "fp16", "dynamic", "int8"):
        result = export("mobilenet_v1", knobs={"width_multiplier": 0.25, "resolution": 32},
                        options=ExportOptions(precision=precision, calib_samples=4, held_out=2),
                        out=tmp_path / precision)
        for entry in result.entries:
            renamed = tmp_path / f"model.{entry.format}"  # the name says nothing
            renamed.write_bytes((tmp_path / precision / entry.path).read_bytes())
            assert precision_of(renamed, Format(entry.format)) == precision, entry.path


def test_third_party_output_goes_to_the_log(tmp_path: Path) -> None:
    """The converter's settings (``fully_quantize:``) and LiteRT's INFO lines stay off
    the terminal, in the log; --verbose shows them."""
    log = tmp_path / "third-party.log"
    args = ("export", "mobilenet_v3_small", "-r", "32", "--int8", "--calib-samples", "4",
            "--out", str(tmp_path / "o"))
    done = _cli(*args, env={"MOBILECTL_LOG": str(log)})
    assert done.returncode == 0, done.stderr
    for noise in ("Traceback", "ValueError", "INFO:", "fully_quantize", "absl", "WARNING:"):
        assert noise not in done.stderr and noise not in done.stdout, noise
    assert "fully_quantize:" in log.read_text()  # it happened, in the log
    verbose = _cli("--verbose", *args, env={"MOBILECTL_LOG": str(log)})
    assert verbose.returncode == 0 and f"third-party output of this run (kept in {log})" in verbose.stderr
    assert "fully_quantize:" in verbose.stderr


def test_untrained_keras_application_gets_a_hint_and_its_macs(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3),
                                      classes=10).save(tmp_path / "b0.keras")
    done = _cli("export", str(tmp_path / "b0.keras"), "--int8", "--format", "tflite",
                "--calib-samples", "8", "--out", str(tmp_path / "o"))
    assert done.returncode == 1, done.stderr
    text = " ".join(done.stderr.split())
    assert "verification failed" in text and "hint: the float model's median top-1 margin" in text
    assert "near-uniform" in text and "MACs unknown" not in text
    assert not (tmp_path / "o").exists()


def test_huge_calibration_image_is_decoded_once_with_one_warning(tmp_path: Path,
                                                                  caplog) -> None:
    from PIL import Image

    from mobilectl.core.manifest import Normalization
    from quant.calibration import load_calibration

    Image.new("RGB", (10000, 9000), (120, 80, 40)).save(tmp_path / "huge.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calib = load_calibration(str(tmp_path), resolution=32, normalization=Normalization(),
                                 samples=16, held_out=4)
    assert calib.calibration.shape == (16, 32, 32, 3)
    assert not [w for w in caught if "DecompressionBomb" in w.category.__name__]
    notes = [r.getMessage() for r in caplog.records if "safety limit" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith("1 calibration image(s)")


def test_host_roofline_is_measured_once_per_process() -> None:
    from device_profiles import harness

    assert harness.host_roofline() is harness.host_roofline()


def test_cached_build_reuses_its_latency_measurements(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "mobilectl.toml"
    spec.write_text('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\n'
                    'knobs = { width_multiplier = 0.25, resolution = 32 }\nformats = ["tflite"]\n'
                    "[artifact.budgets.host]\nmax_latency_ms = 1000\n")
    argv = ["build", str(spec), "--out", str(tmp_path / "d"), "--cache", str(tmp_path / "c"),
            "--json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    first = json.loads(out)["jobs"][0]["budgets"][0]
    assert first["metric"] == "latency_ms" and first["ok"]
    assert len(list((tmp_path / "c" / "measurements").glob("*.json"))) == 1
    code, out, err = run(argv, capsys)
    again = json.loads(out)["jobs"][0]
    assert code == 0 and again["status"] == "reused" and again["budgets"][0] == first
    assert "measure this machine's peak" not in err  # nothing was measured again
    assert not list((tmp_path / "d").glob(".*"))  # no lock file left behind


def test_tables_fit_80_columns_and_names_stay_whole() -> None:
    env = {"COLUMNS": "80"}
    models = _cli("models", env=env)
    info = _cli("info", "mobilenet_v3_large", "-r", "32", "--per-layer", env=env)
    for done in (models, info):
        assert done.returncode == 0, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) <= 80
    assert "mobilenet_v3_small_minimalistic" in models.stdout and "paper MACs" in models.stdout
    assert "stage5.unit3.se.reduce" in info.stdout  # a long layer name, whole
    wide = _cli("info", "mobilenet_v1", "-r", "32", "--per-layer", env={"COLUMNS": "200"})
    assert "mem access (f32) KiB" in wide.stdout and "MAC f32" not in wide.stdout


def test_help_shows_flags_without_a_value() -> None:
    done = _cli("export", "--help", env={"COLUMNS": "100"})
    flags = [line for line in done.stdout.splitlines()
             if any(f in line for f in ("--int8", "--fp16", "--dynamic", "--json"))]
    assert done.returncode == 0 and len(flags) == 4 and not any("<bool>" in f for f in flags)


def test_sensitivity_names_only_layers_and_says_why_nothing_is_suggested() -> None:
    from quant.sensitivity import NO_LAYER, LayerSensitivity, suggest_keep_float, verdict

    rows = [LayerSensitivity(1, NO_LAYER, (), "SOFTMAX", 2.0, 3.0, 1e-4, 0.004,
                             tensor="StatefulPartitionedCall_1:0"),
            LayerSensitivity(2, "stem.conv", ("stem.conv",), "CONV_2D", 0.357, 1.0, 1e-5, 0.01)]
    assert suggest_keep_float(rows) == []  # an op no layer owns cannot be kept float
    text = verdict(rows[1:], [])
    assert "nothing suggested" in text and "stem.conv (CONV_2D), adds 0.357" in text
    assert "0.29" in text and "stands out" not in text


def test_names_carry_the_io_type_so_variants_never_collide(tmp_path: Path) -> None:
    from exporter import formats
    from exporter.artifacts import artifact_name
    from exporter.options import ExportOptions
    from mobilectl.core.types import Format

    tflite = formats.get(Format.TFLITE)
    names = {artifact_name("m", "r32", ExportOptions(precision="int8", io_type=io), tflite)
             for io in ("float", "int8", "uint8")}
    assert names == {"m-r32_int8.tflite", "m-r32-ioint8_int8.tflite", "m-r32-iouint8_int8.tflite"}
    assert artifact_name("m", "", ExportOptions(precision="int8", calib_samples=16), tflite) \
        == "m-c16_int8.tflite"


def test_benchmark_failure_names_the_error_line_not_the_last_info_line() -> None:
    from device_profiles.host import error_line

    stderr = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
              "ERROR: Didn't find op for builtin opcode 'CONV_2D' version '99'\n"
              "INFO: DestroyAccelerator\n")
    assert error_line(stderr).startswith("ERROR: Didn't find op")


def test_latency_budget_without_a_phone_says_why(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "mobilectl.toml"
    spec.write_text('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\n'
                    'knobs = { width_multiplier = 0.25, resolution = 32 }\nformats = ["tflite"]\n'
                    "[artifact.budgets.pixel]\nmax_latency_ms = 5\n")
    code, out, err = run(["build", str(spec), "--out", str(tmp_path / "d"), "--cache",
                          str(tmp_path / "c"), "--benchmark-binary", str(tmp_path / "none"),
                          "--json"], capsys)
    assert code == 1
    error = json.loads(out)["jobs"][0]["error"]
    assert "latency not measured on pixel: " in error and "None" not in error  # the reason
