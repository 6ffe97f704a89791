"""Latency a team can gate on: repetitions, seeded bootstrap intervals, adaptive
repetition until a target interval, and A/B comparison, on real LiteRT runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import error_line, run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MobileNet V2 0.35 at 64 and 96 px (2.25x the MACs), fp32 TFLite; and ONNX at 64 px
    (its medians are not rounded to 10 us, so repetitions never tie)."""
    from exporter.pipeline import ExportOptions, export

    out = tmp_path_factory.mktemp("tiny")
    found = {}
    for size in (64, 96):
        folder = out / f"r{size}"
        export("mobilenet_v2", knobs={"resolution": size, "width_multiplier": 0.35},
               options=ExportOptions(formats=("tflite", "onnx") if size == 64 else ("tflite",),
                                     held_out=2), out=folder)
        [found[str(size)]] = folder.glob("*.tflite")
    [found["onnx"]] = (out / "r64").glob("*.onnx")
    return found


def test_median_interval_is_seeded_and_covers_the_median() -> None:
    from device_profiles.stats import median_interval, ratio_interval

    rng = np.random.default_rng(1)
    values = list(1.0 + 0.05 * rng.standard_normal(9))
    low, high = median_interval(values)
    assert low <= float(np.median(values)) <= high
    assert median_interval(values) == (low, high)  # same samples, same interval
    assert median_interval([2.0]) is None
    many = list(1.0 + 0.05 * rng.standard_normal(60))
    wide, narrow = median_interval(values), median_interval(many)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]  # more repetitions, narrower
    low, high = ratio_interval([2.0, 2.1, 1.9, 2.05], [1.0, 1.02, 0.98, 1.01])
    assert 1.8 < low <= 2.0 <= high < 2.2


def test_policy_stops_at_the_target_or_the_cap() -> None:
    from device_profiles.stats import RepeatPolicy, Repeated, interleave

    policy = RepeatPolicy.of_flags(min_reps=3, max_reps=None, target_ci_pct=5.0)
    assert policy.max_reps == 10
    steady = [1.0, 1.001, 0.999, 1.0005]
    assert policy.done(steady[:3]) and not policy.done(steady[:2])
    drifting = [1.0, 1.3, 0.8, 1.25, 0.85, 1.2, 0.9, 1.3, 0.8, 1.1]
    assert not policy.done(drifting[:9]) and policy.done(drifting)
    assert Repeated.of(drifting, policy).stopped.startswith("cap of 10 repetitions")
    assert Repeated.of(drifting, policy).verdict == "unstable"
    assert Repeated.of(steady[:3], policy).verdict == "stable"
    calls: list[tuple[int, int]] = []

    def once(i: int, rep: int) -> float | str:
        calls.append((i, rep))
        return "broken" if i == 2 else (steady if i == 0 else drifting)[rep]

    failed = interleave(3, policy, once)
    assert calls[:3] == [(0, 0), (1, 0), (2, 0)]  # round-robin: A B C A B ...
    runs = [sum(1 for item, _ in calls if item == i) for i in range(3)]
    assert failed == {2: "broken"} and runs == [3, 10, 1]


def test_profile_repeats_until_the_interval_or_the_cap(tiny: dict[str, Path], tmp_path: Path,
                                                       capsys) -> None:
    model = str(tiny["64"])
    code, out, err = run(["profile", model, "--runs", "10", "--target-ci", "60", "--max-reps",
                          "5", "--out", str(tmp_path / "a"), "--json"], capsys)
    assert code == 0, err
    [m] = json.loads(out)["measurements"]
    reps = m["repeats"]
    count = len(reps["medians_ms"])  # 3, or more when an outlier widened the interval
    if reps["stopped"].startswith("interval within 60%"):
        assert 3 <= count <= 5 and reps["ci_pct"] <= 60
    else:
        assert reps["stopped"] == "cap of 5 repetitions reached above 60%" and count == 5
        assert reps["ci_pct"] > 60
    assert reps["ci_low_ms"] <= m["latency"]["median_ms"] == reps["median_ms"] <= reps["ci_high_ms"]
    assert m["latency"]["runs"] == 10 * count  # every repetition is ten runs
    code, out, err = run(["profile", str(tiny["onnx"]), "--runs", "5", "--target-ci", "0.001",
                          "--max-reps", "4", "--out", str(tmp_path / "b"), "--json"], capsys)
    [m] = json.loads(out)["measurements"]
    assert len(m["repeats"]["medians_ms"]) == 4
    assert m["repeats"]["stopped"] == "cap of 4 repetitions reached above 0.001%"
    assert "repetition 4 (up to 4)" in err
    report = (tmp_path / "b" / "profile.md").read_text()
    assert "| 95% CI ms |" in report and "| 4 |" in report


@pytest.mark.parametrize("argv,message", [
    (["--min-reps", "0"], "--min-reps 0 is not allowed: 1 or more"),
    (["--min-reps", "4", "--max-reps", "2"], "--max-reps 2 is not allowed: at least --min-reps"),
    (["--target-ci", "0"], "--target-ci 0 is not allowed"),
    (["--confidence", "1"], "--confidence 1 is not allowed: between 0 and 1"),
])
def test_repetition_flags_are_checked_first(argv: list[str], message: str, tmp_path: Path,
                                            capsys) -> None:
    code, _, err = run(["profile", "nosuchmodel", *argv, "--out", str(tmp_path)], capsys)
    assert message in error_line(code, err)
    assert not (tmp_path / "profile.json").exists()


def test_compare_a_model_against_itself_and_a_bigger_one(tiny: dict[str, Path],
                                                         tmp_path: Path, capsys) -> None:
    """Interleaved A B A B: the same file twice is no detectable difference; the same
    family at about twice the MACs is slower, with an interval above 1."""
    small, big = str(tiny["64"]), str(tiny["96"])
    code, out, err = run(["compare", small, small, "--runs", "20", "--threads", "1",
                          "--out", str(tmp_path / "same"), "--json"], capsys)
    assert code == 0, err
    [same] = json.loads(out)["verdicts"]
    assert same["verdict"] == "no detectable difference", same
    # identical medians in every repetition give the interval [1, 1] (resolution 0)
    assert same["ci_low"] <= 1 <= same["ci_high"] and same["resolution_pct"] >= 0
    assert "".join(re.findall(r"\[(\d)/2\]", err)) == "12" * 5  # A B A B ..., 5 each
    code, out, err = run(["compare", big, small, "--runs", "20", "--threads", "1",
                          "--out", str(tmp_path / "big")], capsys)
    assert code == 0, err
    sentence = out.strip().splitlines()[-1]
    assert sentence.startswith(f"{Path(big).name} is slower than {Path(small).name} by "), out
    data = json.loads((tmp_path / "big" / "compare.json").read_text())
    [verdict] = data["verdicts"]
    assert verdict["ci_low"] > 1.01 and verdict["ratio"] > 1.05
    macs = [m["macs"] for m in data["measurements"]]
    assert 1.9 < macs[0] / macs[1] < 2.5


def test_compare_bad_input(tiny: dict[str, Path], tmp_path: Path, capsys) -> None:
    code, _, err = run(["compare", str(tiny["64"]), str(tiny["96"]), "--threshold", "-1",
                        "--out", str(tmp_path)], capsys)
    assert "--threshold -1 is not allowed" in error_line(code, err)
    code, _, err = run(["compare", str(tiny["64"]), str(tmp_path / "missing.tflite"),
                        "--out", str(tmp_path)], capsys)
    assert "missing.tflite" in error_line(code, err)
    assert not (tmp_path / "compare.json").exists()
