"""Device state, measured and recorded, through the real adb client: cpufreq governors
and clocks, thermal zones, battery, load; big cores read from cpufreq; waiting to cool
instead of sleeping; Android's fixed performance mode on and off again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import error_line, run


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from exporter.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("state")
    export("mobilenet_v2", knobs={"resolution": 64, "width_multiplier": 0.35},
           options=ExportOptions(formats=("tflite",), held_out=2), out=out)
    [path] = out.glob("*.tflite")
    return path


def _args(device, binary: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["profile", str(model), "--device", "pixel", "--serial", device.serial,
            "--benchmark-binary", str(binary), "--runs", "20", "--warmup", "1",
            "--min-reps", "2", "--out", str(out), "--json", *extra]


def test_state_big_cores_and_fixed_performance_mode(connect_device, benchmark_binary,
                                                    tiny_tflite, tmp_path, capsys) -> None:
    device = connect_device()
    code, out, err = run(_args(device, benchmark_binary, tmp_path, tiny_tflite), capsys)
    assert code == 0, err
    summary = json.loads(out)
    [m] = summary["measurements"]
    for state in (m["state_before"], m["state_after"]):
        assert [c["hw_max_khz"] for c in state["cores"]] == [1_803_000] * 4 + [2_350_000] * 2 \
            + [2_850_000] * 2
        assert {c["governor"] for c in state["cores"]} == {"schedutil"}
        assert dict(state["temps_c"])["BIG"] >= 30.0 and state["battery_level"] == 87
        assert state["charging"] is True and state["load_avg"] == 0.41 and state["cpu_count"] == 8
    assert dict(m["state_after"]["temps_c"])["BIG"] > 30.0  # the runs heated it
    assert m["state_flags"] == []
    pinned = device.taskset_log()
    assert len(pinned) == 2 and all(line.startswith("f0 ") for line in pinned)  # read, not typed
    assert summary["affinity_mask"] == {device.serial: "f0"}
    assert summary["fixed_performance_mode"] == {device.serial: True}
    calls = device.soc.perf_mode_log()
    assert calls == ["power set-fixed-performance-mode-enabled true",
                     "power set-fixed-performance-mode-enabled false"]


def test_fixed_performance_mode_off_again_whatever_happens(connect_device, benchmark_binary,
                                                           tiny_tflite, tmp_path, capsys) -> None:
    device = connect_device("benchmark_error")
    code, _, err = run(_args(device, benchmark_binary, tmp_path, tiny_tflite), capsys)
    assert "Failed to allocate tensors" in error_line(code, err)
    assert device.soc.perf_mode_log()[-1] == "power set-fixed-performance-mode-enabled false"
    device = connect_device("no_perf_mode")
    code, out, err = run(_args(device, benchmark_binary, tmp_path / "b", tiny_tflite), capsys)
    assert code == 0, err
    assert "fixed performance mode not offered" in err and "clocks may vary" in err
    assert json.loads(out)["fixed_performance_mode"] == {device.serial: False}
    assert device.soc.perf_mode_log() == ["power set-fixed-performance-mode-enabled true"]


def test_waits_to_cool_instead_of_sleeping(connect_device, benchmark_binary, tiny_tflite,
                                           tmp_path, capsys) -> None:
    """Each run heats the phone (from 30 C ambient) above 30.3 C, however fast this host
    runs the model; the next waits until it is back below."""
    device = connect_device()
    code, out, err = run(_args(device, benchmark_binary, tmp_path, tiny_tflite,
                               "--max-temp-c", "30.3", "--min-reps", "3", "--runs", "100"),
                         capsys)
    assert code == 0, err
    assert err.count("cool down:") >= 2
    [m] = json.loads(out)["measurements"]
    assert len(m["repeats"]["medians_ms"]) == 3
    assert dict(m["state_before"]["temps_c"])["BIG"] < 30.3


def test_a_phone_that_never_cools(connect_device, benchmark_binary, tiny_tflite, tmp_path,
                                  capsys) -> None:
    """Hot from the start and never cooling: the runs under the limit are kept, flagged
    throttled (the policy caps cpu4-7); the wait that times out says so in one line."""
    device = connect_device("never_cools")
    code, out, err = run(_args(device, benchmark_binary, tmp_path, tiny_tflite,
                               "--max-temp-c", "52.5", "--cool-timeout", "1"), capsys)
    line = error_line(code, err)
    assert "after waiting 1s to cool below 52.5 C; results so far kept" in line
    assert "still 5" in line and "(BIG)" in line
    report = json.loads((tmp_path / "profile.json").read_text())
    [m] = report["measurements"]  # the first repetition ran while it was below the limit
    assert len(m["repeats"]["medians_ms"]) == 1
    assert m["state_flags"] and m["state_flags"][0].startswith("throttled: 4 core(s) capped")
    assert "throttled: 4 core(s) capped" in err
    assert device.soc.perf_mode_log()[-1].endswith("false")


def test_host_state_is_recorded(tiny_tflite, tmp_path, capsys) -> None:
    code, out, err = run(["profile", str(tiny_tflite), "--runs", "5", "--min-reps", "1",
                          "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    import os

    assert m["state_before"]["cpu_count"] == os.cpu_count()
    assert m["state_before"]["load_avg"] is not None and m["state_after"]["cores"]


def test_state_parsing_and_big_cores() -> None:
    from device_profiles.device_state import big_cores_mask, parse_state, state_flags

    text = ("cpu 0 performance 2000000 2000000 2000000\ncpu 1 performance - - 2000000\n"
            "zone soc 41.5\nzone cpu 38250\nload 0.5\ncores 2\n")
    state = parse_state(text)
    assert state.temps_c == (("soc", 41.5), ("cpu", 38.25))  # degrees or millidegrees
    assert big_cores_mask(state) == "3"  # alike cores: all of them
    assert big_cores_mask(parse_state("")) is None
    hot = parse_state(text.replace("zone soc 41.5", "zone soc 49.0"))
    assert state_flags(state, hot) == ("temperature rose 7.5 C (soc)",)
    busy = parse_state(text.replace("load 0.5", "load 3.5"))
    assert state_flags(busy, busy) == ("busy: load 3.5 on 2 cores",)


def test_wait_cool_polls_until_below_or_gives_up(monkeypatch) -> None:
    from device_profiles import device_state
    from device_profiles.device_state import TooHot, parse_state, wait_cool

    readings = iter([50.0, 45.0, 39.0])
    said: list[str] = []

    def read():
        return parse_state(f"zone BIG {next(readings)}\n")

    state = wait_cool(read, max_temp_c=40, timeout_s=60, announce=said.append, poll_s=0)
    assert state.hottest_c == 39.0 and said == ["cool down: 50.0 C (BIG) > 40 C"]
    with pytest.raises(TooHot, match=r"still 50.0 C \(BIG\) after waiting 0s"):
        wait_cool(lambda: parse_state("zone BIG 50000\n"), max_temp_c=40, timeout_s=0,
                  announce=said.append, poll_s=0)
    monkeypatch.setattr(device_state, "NO_THERMAL_PAUSE_S", 0.01)
    slept: list[float] = []
    monkeypatch.setattr(device_state.time, "sleep", slept.append)
    assert wait_cool(lambda: parse_state(""), max_temp_c=40, timeout_s=60,
                     announce=said.append).hottest_c is None
    assert slept == [0.01]  # no thermal zone: a fixed pause instead
