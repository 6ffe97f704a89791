"""The benchmark_model output parser on every variant the tool prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_profiles.parse import BenchmarkOutputError, parse_benchmark_output

MODERN = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/mobilectl/model.tflite]
INFO: Loaded model /data/local/tmp/mobilectl/model.tflite
INFO: Initialized session in 119.515ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=57000 min=56000 max=87112 avg=58147.4 std=9000 p5=56000 median=57100 p95=87112
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628
INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
"""

OLD_NO_PREFIX = """\
Initialized session in 3.276ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=26 first=35060 curr=19167 min=17926 max=35060 avg=19439.7 std=3133
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=55 first=18567 curr=18220 min=17756 max=19776 avg=18167.8 std=335
Inference timings in us: Init: 3276, First inference: 35060, Warmup (avg): 19439.7, Inference (avg): 18167.8
"""


def test_modern_output() -> None:
    result = parse_benchmark_output(MODERN)
    assert result.inference.count == 1000
    assert result.inference.avg_ms == pytest.approx(63.7432)
    assert result.inference.median_ms == pytest.approx(51.891)
    assert result.inference.p5_ms == pytest.approx(49.62)
    assert result.inference.p95_ms == pytest.approx(68.628)
    assert result.inference.min_ms == pytest.approx(49.088)
    assert result.warmup is not None and result.warmup.count == 9
    assert result.init_ms == pytest.approx(119.515)
    assert result.first_inference_ms == pytest.approx(87.112)
    assert (result.memory_init_mb, result.memory_overall_mb) == (55.4961, 55.4961)


def test_old_output_without_prefix_or_percentiles() -> None:
    result = parse_benchmark_output(OLD_NO_PREFIX)
    assert result.inference.count == 55 and result.inference.avg_ms == pytest.approx(18.1678)
    assert result.inference.median_ms is None and result.inference.p95_ms is None
    assert result.inference.std_ms == pytest.approx(0.335)
    assert result.init_ms == pytest.approx(3.276) and result.memory_overall_mb is None


def test_all_same_and_single_stats_line() -> None:
    result = parse_benchmark_output("INFO: count=50 curr=1234(all same)\n")
    stats = result.inference
    assert stats.count == 50 and stats.avg_ms == stats.median_ms == stats.max_ms == 1.234
    assert stats.std_ms == 0 and result.warmup is None


@pytest.mark.parametrize("text,message", [
    ("INFO: Loaded model m.tflite\nERROR: Failed to allocate tensors!\n", "Failed to allocate"),
    ("ERROR: Could not open 'x.tflite'.\n", "Could not open"),
    ("INFO: STARTING!\n", "no inference statistics"),
    ("", "no inference statistics"),
])
def test_errors_are_failures(text: str, message: str) -> None:
    with pytest.raises(BenchmarkOutputError, match=message):
        parse_benchmark_output(text)


# ---- the fixture corpus: one file per released format ------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
CASES = sorted(p.stem for p in FIXTURES.glob("*.txt"))


def _matches(value: object, expected: object) -> bool:
    if isinstance(expected, float) and isinstance(value, (int, float)):
        return value == pytest.approx(expected, rel=1e-6)
    return value == expected


@pytest.mark.parametrize("case", CASES)
def test_fixture_corpus(case: str) -> None:
    text = (FIXTURES / f"{case}.txt").read_text()
    expected = json.loads((FIXTURES / f"{case}.json").read_text())
    if "error" in expected:
        with pytest.raises(BenchmarkOutputError) as failed:
            parse_benchmark_output(text)
        assert expected["error"] in str(failed.value)
        assert "INFO:" not in str(failed.value)
        return
    result = parse_benchmark_output(text)
    for part in ("inference", "warmup"):
        if part not in expected:
            continue
        stats = getattr(result, part)
        if expected[part] is None:
            assert stats is None
            continue
        for key, want in expected[part].items():
            assert _matches(getattr(stats, key), want), (part, key, getattr(stats, key))
    for key in ("init_ms", "first_inference_ms", "memory_init_mb", "memory_overall_mb",
                "peak_memory_mb"):
        if key in expected:
            assert _matches(getattr(result, key), expected[key]), (key, getattr(result, key))
    placements = {d.delegate: d.placement for d in result.delegations}
    assert placements == expected.get("delegations", {})
    for name in ("gpu", "nnapi"):
        for key, want in expected.get(name, {}).items():
            assert getattr(result.delegation(name), key) == want, (name, key)


def test_corpus_covers_every_release_family() -> None:
    """TFLite 2.4 (no prefixes), a one-run warm-up, percentiles, LiteRT's peak memory,
    the Android app's logcat (both formats) and the delegate outcomes."""
    for needed in ("tflite-2.4-no-prefix", "tflite-2.7-single-warmup-scientific",
                   "tflite-2.10-percentiles", "litert-peak-memory", "android-app-logcat",
                   "android-app-logcat-brief", "gpu-partial-old", "gpu-partial-new",
                   "nnapi-not-executed", "gpu-unsupported-platform", "gpu-init-failed"):
        assert needed in CASES
        assert (FIXTURES / f"{needed}.json").is_file()


def test_unknown_lines_are_ignored_and_error_names_the_last_meaningful_line() -> None:
    text = MODERN.replace("INFO: Initialized", "INFO: Something new in a later release\nINFO: Initialized")
    assert parse_benchmark_output(text).inference.count == 1000
    with pytest.raises(BenchmarkOutputError, match=r"last: Segmentation fault"):
        parse_benchmark_output("INFO: STARTING!\nSegmentation fault\nINFO: bye\n")
