"""The adb path end to end: the real adb client, a test device speaking the adb
protocol (tests/adb_device), benchmark_model output parsed from real LiteRT runs,
and every fault a user can meet."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from helpers import error_line, run




@pytest.fixture(scope="module")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small .tflite files (float and int8) with a manifest; one name has spaces and
    shell metacharacters, which must reach the device quoted."""
    from exporter.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("models")
    export("mobilenet_v2", knobs={"resolution": 64, "width_multiplier": 0.35},
           options=ExportOptions(formats=("tflite",), held_out=2), out=out)
    export("mobilenet_v2", knobs={"resolution": 64, "width_multiplier": 0.35},
           options=ExportOptions(precision="int8", formats=("tflite",), calib_samples=8,
                                 held_out=2), out=out)
    files = sorted(out.glob("*.tflite"))
    odd = out / "odd name; $(touch pwned) 'q'.tflite"
    shutil.copy(files[0], odd)
    return [*files, odd]


def _no_stray_processes(device) -> None:
    time.sleep(0.3)
    assert all(proc.poll() is not None for proc in device.processes)


def _profile_args(device, binary: Path, out: Path, *extra: str) -> list[str]:
    return ["profile", "--device", "pixel", "--serial", device.serial, "--benchmark-binary",
            str(binary), "--runs", "5", "--warmup", "1", "--out", str(out), "--json", *extra]


def test_devices_lists_the_test_device_with_its_profile(connect_device, capsys) -> None:
    device = connect_device()
    code, out, err = run(["devices", "--json"], capsys)
    assert code == 0, err
    row = next(r for r in json.loads(out) if r["serial"] == device.serial)
    assert row == {"serial": device.serial, "state": "device", "model": "Pixel 7",
                   "product": "panther", "abi": "arm64-v8a", "profile": "pixel"}


def test_profile_registry_model_int8_and_float(connect_device, benchmark_binary, tmp_path,
                                               capsys) -> None:
    device = connect_device()
    for precision in ("int8", "fp32"):
        code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                              "mobilenet_v2", "--precision", precision], capsys)
        assert code == 0, err
        [m] = json.loads(out)["measurements"]
        assert m["precision"] == precision and m["model"] == "mobilenet_v2"
        assert m["latency"]["runs"] == 3 * 5 and m["latency"]["median_ms"] > 0.1  # 3 reps, 224px
        assert m["macs"] == 300_774_272  # the FLOPs proxy's count for MobileNet V2 at 224
        assert m["gmacs"] > 0 and 0 < m["roofline_fraction"] < 1
        assert m["peak_memory_mb"] > 0 and m["device"] == f"pixel:{device.serial}"
    pinned = device.taskset_log()
    assert len(pinned) == 2 * 3 and all(line.startswith("f0 ") for line in pinned)
    assert "--num_threads=4" in pinned[0] and "--use_xnnpack=true" in pinned[0]
    assert not (device.tmp / "mobilectl").exists()  # what was pushed is removed
    assert (tmp_path / "profile.md").is_file() and (tmp_path / "latency_vs_macs.png").is_file()
    _no_stray_processes(device)


def test_paths_with_spaces_and_metacharacters_reach_the_device_quoted(
        connect_device, benchmark_binary, small_models, tmp_path, capsys) -> None:
    device = connect_device()
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                          *map(str, small_models)], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert {m["artifact"] for m in data["measurements"]} == {p.name for p in small_models}
    assert {m["precision"] for m in data["measurements"]} == {"fp32", "int8"}
    assert not list(device.root.rglob("pwned"))  # $(...) was never executed
    assert any("odd name; $(touch pwned)" in line for line in device.taskset_log())


def test_unauthorized_and_offline(connect_device, benchmark_binary, small_models, tmp_path,
                                  capsys) -> None:
    for fault, message in (("unauthorized", "is unauthorized: accept the USB debugging"),
                           ("offline", "is offline: reconnect it")):
        device = connect_device(fault)
        code, out, err = run(["devices", "--json"], capsys)
        state = next(r["state"] for r in json.loads(out) if r["serial"] == device.serial)
        assert state == fault
        code, _, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                            str(small_models[0])], capsys)
        assert message in error_line(code, err)


@pytest.mark.parametrize("fault,message", [
    ("drop_on_push", "device lost"),
    ("drop_on_benchmark", "device lost"),
    ("benchmark_error", "Failed to allocate tensors"),
    ("no_space", "no space left on the device"),
])
def test_faults_keep_finished_results(fault: str, message: str, connect_device,
                                      benchmark_binary, small_models, tmp_path, capsys) -> None:
    device = connect_device(fault)
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                          *map(str, small_models[:2])], capsys)
    assert message in error_line(code, err)
    report = json.loads((tmp_path / "profile.json").read_text())
    finished = 1 if fault.startswith("drop") else 0
    assert len(report["measurements"]) == finished  # the model before the fault is kept
    assert report["failures"] and message in " ".join(report["failures"])
    _no_stray_processes(device)


def test_slow_device_times_out(connect_device, benchmark_binary, small_models, tmp_path,
                               capsys) -> None:
    device = connect_device("slow", slow_seconds=8.0)
    start = time.monotonic()
    code, _, err = run([*_profile_args(device, benchmark_binary, tmp_path, "--timeout", "2"),
                        str(small_models[0])], capsys)
    assert "timed out after 2s" in error_line(code, err)
    assert time.monotonic() - start < 8.0


def test_two_devices_need_a_serial(connect_device, benchmark_binary, small_models, tmp_path,
                                   capsys) -> None:
    connect_device()
    connect_device()
    code, _, err = run(["profile", "--device", "pixel", "--benchmark-binary",
                        str(benchmark_binary), str(small_models[0]), "--out", str(tmp_path)],
                       capsys)
    assert "several devices match profile pixel" in error_line(code, err)


def test_missing_benchmark_binary_and_adb(connect_device, small_models, tmp_path, capsys,
                                          monkeypatch) -> None:
    device = connect_device()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = run(["profile", "--device", "pixel", "--serial", device.serial,
                        str(small_models[0]), "--out", str(tmp_path)], capsys)
    assert "no benchmark_model for arm64-v8a" in error_line(code, err)
    assert "mobilectl device setup --abi arm64-v8a" in err
    code, _, err = run(["devices", "--adb", str(tmp_path / "no-adb")], capsys)
    assert "adb not found" in error_line(code, err) and "apt-get install adb" in err


def test_remote_adb_server_and_parallel_devices(connect_device, benchmark_binary,
                                                small_models, tmp_path, capsys) -> None:
    import os

    first, second = connect_device(), connect_device()
    server = f"127.0.0.1:{os.environ['ANDROID_ADB_SERVER_PORT']}"
    code, out, err = run(["devices", "--adb-server", server, "--json"], capsys)
    assert code == 0 and {first.serial, second.serial} <= {r["serial"] for r in json.loads(out)}
    code, out, err = run(["profile", "--device", "pixel", "--serial", first.serial, "--serial",
                          second.serial, "--adb-server", server, "--benchmark-binary",
                          str(benchmark_binary), "--runs", "3", "--warmup", "1", "--out",
                          str(tmp_path), "--json", str(small_models[0])], capsys)
    assert code == 0, err
    devices = {m["device"] for m in json.loads(out)["measurements"]}
    assert devices == {f"pixel:{first.serial}", f"pixel:{second.serial}"}


def test_per_layer_on_the_phone_from_benchmark_model_op_tables(
        connect_device, benchmark_binary, small_models, tmp_path, capsys) -> None:
    device = connect_device()
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                          str(small_models[0]), "--per-layer"], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    table = m["per_layer"]
    assert m["init_ms"] > 0 and m["first_inference_ms"] > 0
    assert table["method"].startswith("benchmark_model --enable_op_profiling")
    assert table["rows"] and all(r["ms"] is not None for r in table["rows"])
    assert table["whole_ms"] > 0 and 0.2 < table["parts_over_whole"] < 5
    runs = device.taskset_log()
    assert len(runs) == 3 + 1  # three repetitions, then one op-profiled run (not timed)
    assert not any("--enable_op_profiling" in r for r in runs[:3])
    assert [r["ops"] for r in table["rows"]] == [[i] for i in range(len(table["rows"]))]
    assert sum(r["macs"] for r in table["rows"]) == pytest.approx(m["macs"], rel=0.005)
    assert {"stem.conv", "classifier.fc"} <= {n for r in table["rows"] for n in r["layers"]}
    assert "--enable_op_profiling=true" in device.taskset_log()[-1]


def test_per_layer_without_op_tables_keeps_whole_model_figures(
        connect_device, benchmark_binary, small_models, tmp_path, capsys) -> None:
    device = connect_device("no_op_profiling")
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                          str(small_models[0]), "--per-layer"], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    assert m["per_layer"] is None and m["latency"]["median_ms"] > 0
    [line] = [l for l in err.splitlines() if l.startswith("warning:")]
    assert "printed no op-profiling tables" in line and "whole-model figures only" in line
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                          str(small_models[0]), "--per-layer", "--delegate", "gpu"], capsys)
    assert code == 0, err
    assert "--per-layer needs --delegate cpu" in err
    assert json.loads(out)["measurements"][0]["per_layer"] is None
