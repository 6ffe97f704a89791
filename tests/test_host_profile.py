"""The host backend for real: LiteRT's benchmark tool and onnxruntime in their own
processes, the measured roofline, the report (Spearman, plot, Markdown), and reuse of
current artifacts."""

from __future__ import annotations

import json
from pathlib import Path


from helpers import run



def test_host_profile_of_a_manifest(tmp_path: Path, capsys) -> None:
    from exporter.pipeline import ExportOptions, export

    models = tmp_path / "models"
    opts = ExportOptions(held_out=2)
    for name, knobs in (("mobilenet_v1", {"width_multiplier": 0.25, "resolution": 32}),
                        ("mobilenet_v1", {"width_multiplier": 1.0, "resolution": 64}),
                        ("squeezenet1_1", {"resolution": 64})):
        export(name, knobs=knobs, options=opts, out=models)
    code, out, err = run(["profile", str(models / "manifest.json"), "--device", "host",
                          "--runs", "8", "--warmup", "2", "--threads", "1", "--out",
                          str(tmp_path / "report"), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert len(data["measurements"]) == 6
    backends = {m["fmt"]: m["backend"] for m in data["measurements"]}
    assert backends == {"tflite": "litert benchmark_litert_model", "onnx": "onnxruntime CPU"}
    for m in data["measurements"]:
        assert len(m["repeats"]["medians_ms"]) == 3  # three repetitions by default
        assert m["latency"]["runs"] == 3 * 8 and m["latency"]["median_ms"] > 0
        assert m["macs"] > 0 and m["gmacs"] > 0 and 0 < m["peak_memory_mb"] < 2000
        assert m["roofline_fraction"] is not None and m["threads"] == 1
    assert data["roofline"]["peak_gmacs_fp32"] > 0 and data["roofline"]["bandwidth_gbs"] > 0
    rho = data["spearman_macs_latency"]["tflite fp32"]
    assert rho["models"] == 3 and -1 <= rho["rho"] <= 1
    report = (tmp_path / "report" / "profile.md").read_text()
    assert "Spearman" in report and "![MACs vs latency](latency_vs_macs.png)" in report
    png = (tmp_path / "report" / "latency_vs_macs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_registry_names_are_exported_once_then_reused(tmp_path: Path, capsys) -> None:
    argv = ["profile", "squeezenet1_1", "--device", "host", "--runs", "3", "--warmup", "1",
            "--out", str(tmp_path), "--json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "export squeezenet1_1" in err
    first = {m["artifact"] for m in json.loads(out)["measurements"]}
    assert first == {"squeezenet1_1_fp32.tflite", "squeezenet1_1_fp32.onnx"}
    code, out, err = run(argv, capsys)
    assert code == 0 and "reuse squeezenet1_1" in err and "export squeezenet1_1" not in err


def test_profile_bad_input(tmp_path: Path, capsys) -> None:
    for argv, message in (
        (["--device", "phone"], "unknown device profile 'phone'"),
        (["--delegate", "gpu"], "--delegate 'gpu' is not allowed for host: one of cpu"),
        (["--precision", "fp8"], "--precision 'fp8' is not allowed"),
        ([str(tmp_path / "none.tflite")], "no such file"),
    ):
        code, _, err = run(["profile", *argv, "--out", str(tmp_path / "o")], capsys)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_device_setup_installs_a_local_binary(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    code, _, err = run(["device", "setup", "--abi", "arm64-v8a", "--from", str(binary),
                        "--sha256", "0" * 64], capsys)
    assert code == 2 and "checksum mismatch" in err
    code, out, err = run(["device", "setup", "--abi", "arm64-v8a", "--from", str(binary)], capsys)
    installed = tmp_path / "cache" / "mobilectl" / "benchmark_model" / "arm64-v8a" / "benchmark_model"
    assert code == 0 and str(installed) in out and installed.read_bytes() == b"\x7fELF fake"
    assert installed.stat().st_mode & 0o111
