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


# ---- benchmark_model as phones print it (older releases, delegates, bad binaries) ----

def test_an_older_release_end_to_end(connect_device, benchmark_binary, small_models,
                                     tmp_path, capsys) -> None:
    """TFLite 2.4's format through the real adb client: a one-run warm-up without avg,
    no percentiles, the old memory line; the flags it does not know are not passed."""
    device = connect_device(bench_format="tflite-2.4")
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path, "--warmup", "1"),
                          str(small_models[0])], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    assert m["latency"]["median_ms"] > 0 and m["latency"]["p5_ms"] is None
    assert m["peak_memory_mb"] > 0  # "Peak memory footprint (MB): init= overall="
    runs = device.taskset_log()
    assert runs and not any("--report_peak_memory_footprint" in r or "--max_secs" in r
                            for r in runs)


def test_a_current_release_is_asked_for_peak_memory_and_a_time_limit(
        connect_device, benchmark_binary, small_models, tmp_path, capsys) -> None:
    device = connect_device()
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path),
                          str(small_models[0])], capsys)
    assert code == 0, err
    runs = device.taskset_log()
    assert all("--report_peak_memory_footprint=true" in r and "--max_secs=" in r for r in runs)


@pytest.mark.parametrize("gpu_ops, bench_format, says", [
    (("CONV_2D", "DEPTHWISE_CONV_2D", "ADD"), "litert", "gpu ran only part of the graph"),
    (("CONV_2D", "DEPTHWISE_CONV_2D", "ADD"), "tflite-2.4", "gpu ran only part of the graph"),
    ((), "litert", "gpu requested, but it ran none of the graph"),
    (None, "litert", "GPU acceleration is unsupported on this platform"),
])
def test_gpu_delegate_placement_is_reported_and_flagged(
        gpu_ops, bench_format, says, connect_device, benchmark_binary, small_models, tmp_path,
        capsys) -> None:
    """The test device's GPU delegate takes only some op types: partial and zero
    delegation come through the real adb client, in the table, JSON and report."""
    device = connect_device(gpu_ops=gpu_ops, bench_format=bench_format)
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path, "--delegate", "gpu"),
                          str(small_models[0])], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    assert m["delegate"] == "gpu" and m["delegate_flags"] and says in m["delegate_flags"][0]
    assert any(says in line for line in err.splitlines() if line.startswith("warning:"))
    placement = m["delegation"]["placement"]
    assert placement == ("partial" if gpu_ops else "none")
    if gpu_ops:
        assert 0 < m["delegation"]["nodes"] and (m["delegation"]["total"] is None
                                                 or m["delegation"]["nodes"] < m["delegation"]["total"])
    assert says in (tmp_path / "profile.md").read_text()


def test_full_gpu_delegation_raises_no_flag(connect_device, benchmark_binary, small_models,
                                            tmp_path, capsys) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    plain = Interpreter(model_path=str(small_models[0]), experimental_op_resolver_type=
                        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = tuple(sorted({op["op_name"] for op in plain._get_ops_details()}))  # noqa: SLF001
    device = connect_device(gpu_ops=ops)
    code, out, err = run([*_profile_args(device, benchmark_binary, tmp_path, "--delegate", "gpu"),
                          str(small_models[0])], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    assert m["delegation"]["placement"] == "full" and m["delegate_flags"] == []


@pytest.mark.parametrize("body, says", [
    ("#!/bin/sh\nexit 0\n", "printed nothing on the device"),
    ("#!/bin/sh\necho 'usage: benchmark_model'; echo 'Flags:'; "
     "echo '\t--graph=\tstring\toptional\tgraph file name'; exit 1\n", "printed its usage text"),
    ("ELF-for-x86_64\n", "does not run on this arm64-v8a device"),
])
def test_bad_binaries_say_what_to_do(body: str, says: str, connect_device, small_models,
                                     tmp_path, capsys) -> None:
    binary = tmp_path / "bin" / "benchmark_model"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56 if body.startswith("ELF")
                       else body.encode())
    binary.chmod(0o755)
    device = connect_device()
    code, out, err = run([*_profile_args(device, binary, tmp_path / "out"),
                          str(small_models[0])], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0]
    assert "benchmark_model" in lines[0] or str(binary) in lines[0]


def test_build_gate_requires_full_gpu_delegation(connect_device, benchmark_binary, tmp_path,
                                                 capsys) -> None:
    """``require_delegate = "gpu"``: a graph the device's GPU delegate takes only in part
    fails the gate, with the share benchmark_model reported."""
    device = connect_device(gpu_ops=("CONV_2D", "DEPTHWISE_CONV_2D"))
    spec = tmp_path / "mobilectl.toml"
    spec.write_text("""
[[artifact]]
name = "net"
model = "mobilenet_v2"
knobs = { width_multiplier = 0.35, resolution = 64 }
formats = ["tflite"]
[artifact.budgets.pixel]
require_delegate = "gpu"
""")
    code, out, err = run(["build", str(spec), "--out", str(tmp_path / "dist"), "--cache",
                          str(tmp_path / "cache"), "--serial", device.serial,
                          "--benchmark-binary", str(benchmark_binary), "--json"], capsys)
    assert code == 1, err
    [check] = json.loads(out)["jobs"][0]["budgets"]
    assert check["metric"] == "delegated_share" and not check["ok"]
    assert 0 < check["value"] < 1
    assert "gpu delegate required on pixel, but it ran part of the graph" in check["text"]
    assert any("--use_gpu=true" in line for line in device.taskset_log())


def test_require_delegate_must_be_one_the_profile_has(tmp_path, capsys) -> None:
    spec = tmp_path / "mobilectl.toml"
    spec.write_text('[[artifact]]\nname = "n"\nmodel = "mobilenet_v1"\n'
                    '[artifact.budgets.pixel]\nrequire_delegate = "tpu"\n')
    code, _, err = run(["build", str(spec), "--out", str(tmp_path / "d")], capsys)
    assert "require_delegate' = 'tpu' is not allowed: one of gpu, nnapi" in error_line(code, err)
