"""`mobilectl build`: a spec built end to end, reuse, targeted rebuilds, reproducibility,
the gate, matrix slices and merging, the lock, and spec errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import run

TINY = '{ width_multiplier = 0.25, resolution = 32, num_classes = 10 }'



def _spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mobilectl.toml"
    path.write_text(body)
    return path


def _build(tmp_path: Path, capsys, *extra: str) -> tuple[int, dict, str]:
    code, out, err = run(["build", str(tmp_path / "mobilectl.toml"), "--out",
                          str(tmp_path / "dist"), "--cache", str(tmp_path / "cache"),
                          "--json", *extra], capsys)
    return code, (json.loads(out) if out.strip() else {}), err


def _status(data: dict) -> dict[str, str]:
    return {job["artifact"]: job["status"] for job in data["jobs"]}


def _shas(tmp_path: Path) -> dict[str, str]:
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    return {a["path"]: a["sha256"] for a in manifest["artifacts"]}


def test_build_reuse_targeted_rebuild_and_reproducible(tmp_path: Path, capsys) -> None:
    spec = f"""
[defaults]
formats = ["tflite", "onnx"]

[[artifact]]
name = "tiny"
model = "mobilenet_v1"
knobs = {TINY}
precisions = ["int8"]
calib_samples = 8

[[artifact]]
name = "other"
model = "mobilenet_v1"
knobs = {{ width_multiplier = 0.25, resolution = 32, num_classes = 5 }}
precisions = ["fp32"]
"""
    _spec(tmp_path, spec)
    code, data, err = _build(tmp_path, capsys)
    assert code == 0, err
    assert _status(data) == {"tiny/int8": "built", "other/fp32": "built"}
    first = _shas(tmp_path)
    assert set(first) == {"mobilenet_v1-w0.25-r32-c8_int8.tflite", "mobilenet_v1-w0.25-r32-c8_int8.onnx",
                          "mobilenet_v1-w0.25-r32_fp32.tflite", "mobilenet_v1-w0.25-r32_fp32.onnx"}
    summary = (tmp_path / "dist" / "summary.md").read_text()
    assert "| tiny/int8 | `mobilenet_v1-w0.25-r32-c8_int8.tflite`" in summary and "2 built" in summary

    code, data, err = _build(tmp_path, capsys)
    assert code == 0 and _status(data) == {"tiny/int8": "reused", "other/fp32": "reused"}
    assert "0 built, 2 reused" in (tmp_path / "dist" / "summary.md").read_text()
    _cached_build_loads_no_tensorflow(tmp_path)

    _spec(tmp_path, spec.replace("num_classes = 5", "num_classes = 6"))
    code, data, err = _build(tmp_path, capsys)
    assert code == 0 and _status(data) == {"tiny/int8": "reused", "other/fp32": "built"}

    _spec(tmp_path, spec)  # back to the first spec, from scratch: the same bytes
    for folder in ("dist", "cache"):
        import shutil

        shutil.rmtree(tmp_path / folder)
    code, data, err = _build(tmp_path, capsys, "--jobs", "2")
    assert code == 0 and set(_status(data).values()) == {"built"}
    assert _shas(tmp_path) == first


def _cached_build_loads_no_tensorflow(tmp_path: Path) -> None:
    """A fresh process rebuilding a fully cached spec reuses every job and never loads
    TensorFlow (only a job that really exports pays for it)."""
    args = ["build", str(tmp_path / "mobilectl.toml"), "--out", str(tmp_path / "dist"),
            "--cache", str(tmp_path / "cache"), "--json"]
    code = ("import sys\nfrom mobilectl.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(_status(json.loads(done.stdout)).values()) == {"reused"}


def test_gate_fails_on_verification_and_budget(digits_model: dict, tmp_path: Path,
                                               capsys) -> None:
    _spec(tmp_path, f"""
[[artifact]]
name = "strict"
model = "mobilenet_v1"
knobs = {TINY}
weights = "{digits_model['weights']}"
calib = "{digits_model['calib']}"
calib_samples = 16
precisions = ["int8"]
formats = ["tflite"]
[artifact.thresholds]
min_sqnr_db = 200

[[artifact]]
name = "big"
model = "mobilenet_v1"
knobs = {TINY}
formats = ["tflite"]
[artifact.budgets.host]
max_size_mb = 0.01
""")
    code, data, err = _build(tmp_path, capsys)
    assert code == 1 and "error: 1 artifact(s) failed; first: strict/int8" in err
    assert "sqnr_db" in err and "below 200 dB by" in err
    assert _status(data) == {"strict/int8": "failed"}  # stops at the first failure
    code, data, err = _build(tmp_path, capsys, "--keep-going")
    assert code == 1 and _status(data) == {"strict/int8": "failed", "big/fp32": "failed"}
    big = next(job for job in data["jobs"] if job["artifact"] == "big/fp32")
    assert "MB > 0.01 MB on host" in big["error"]


def test_only_slices_and_merge(tmp_path: Path, capsys) -> None:
    _spec(tmp_path, f"""
[[artifact]]
name = "a"
model = "mobilenet_v1"
knobs = {TINY}
formats = ["tflite"]
[[artifact]]
name = "b"
model = "squeezenet1_1"
knobs = {{ resolution = 64 }}
formats = ["tflite"]
""")
    spec = str(tmp_path / "mobilectl.toml")
    for name in ("a", "b"):
        code, _, err = run(["build", spec, "--only", name, "--out", str(tmp_path / name),
                            "--cache", str(tmp_path / "cache")], capsys)
        assert code == 0, err
    code, out, err = run(["build", "--merge", str(tmp_path / "a"), "--merge", str(tmp_path / "b"),
                          "--out", str(tmp_path / "all")], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == [
        "mobilenet_v1-w0.25-r32_fp32.tflite", "squeezenet1_1-r64_fp32.tflite"]
    code, _, err = run(["build", spec, "--only", "c", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--only c: no such artifact" in err


def test_lock_serialises_builds_into_one_folder(tmp_path: Path) -> None:
    from mobilectl.build import locked

    order: list[str] = []

    def second() -> None:
        with locked(tmp_path, lambda s: order.append("waiting")):
            order.append("second")

    with locked(tmp_path, lambda s: None):
        worker = threading.Thread(target=second)
        worker.start()
        time.sleep(0.3)
        order.append("first done")
    worker.join(timeout=5)
    assert order == ["waiting", "first done", "second"]


@pytest.mark.parametrize("body,message", [
    ('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\nprecison = ["int8"]\n',
     "unknown key 'artifact[0].precison' (did you mean 'precisions'?)"),
    ('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\nprecisions = ["int4"]\n',
     "key 'artifact[0].precisions' value 'int4' is not allowed: one of fp32, fp16, dynamic, int8"),
    ('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\noutput = "../evil"\n',
     "it would write outside --out"),
    ('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\nweights = "nope.h5"\n',
     "key 'artifact[0].weights' = 'nope.h5': no such file"),
    ('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\n[[artifact]]\nname = "a"\nmodel = "x"\n',
     "artifact name 'a' is used twice"),
    ('[[artifact]]\nname = "a"\nmodel = "mobilenet_v1"\n[artifact.budgets.pixl]\nmax_size_mb = 1\n',
     "unknown device profile (did you mean 'pixel'?)"),
    ('[defaults]\nformat = ["onnx"]\n[[artifact]]\nname = "a"\nmodel = "m"\n',
     "unknown key 'defaults.format' (did you mean 'formats'?)"),
])
def test_spec_errors_name_file_key_and_allowed(body: str, message: str, tmp_path: Path,
                                               capsys) -> None:
    _spec(tmp_path, body)
    code, out, err = _build(tmp_path, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "mobilectl.toml" in lines[0], err
    assert message in lines[0]
    assert not (tmp_path / "dist").exists()


def test_pyproject_tool_table(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\n[tool.mobilectl]\n[[tool.mobilectl.artifact]]\n'
        'name = "a"\nmodel = "mobilenet_v1"\nknobz = {}\n')
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["build"], capsys)
    assert code == 2 and "unknown key 'tool.mobilectl.artifact[0].knobz'" in err


def test_each_exported_job_runs_in_a_fresh_process(tmp_path: Path, capsys) -> None:
    """Every job that really exports gets a worker process of its own, even with
    --jobs 1 (the build's peak memory is its largest job's); reused jobs start none."""
    import os

    _spec(tmp_path, f"""
[[artifact]]
name = "a"
model = "mobilenet_v1"
knobs = {TINY}
formats = ["tflite"]
precisions = ["fp32", "fp16"]
""")
    code, data, err = _build(tmp_path, capsys)
    assert code in (0, None), err
    built = [job for job in data["jobs"] if job["status"] == "built"]
    workers = [job["worker"] for job in built]
    assert len(built) >= 2 and len(set(workers)) == len(workers) and os.getpid() not in workers
    assert all(job["peak_rss_mb"] > 100 for job in built)  # TensorFlow was loaded there
    code, data, err = _build(tmp_path, capsys)
    assert {job["status"] for job in data["jobs"]} == {"reused"}
    assert all(job["worker"] is None for job in data["jobs"])


def _gated(tmp_path: Path, resolution: int, name: str = "net") -> Path:
    folder = tmp_path / f"r{resolution}-{name}"
    folder.mkdir()
    _spec(folder, f"""
[[artifact]]
name = "{name}"
output = "{name}"
model = "mobilenet_v1"
knobs = {{ width_multiplier = 0.25, resolution = {resolution}, num_classes = 10 }}
formats = ["tflite"]
[artifact.budgets.host]
max_regression_pct = 5
confidence = 0.95
""")
    return folder


def test_regression_gate_against_a_baseline(tmp_path: Path, capsys) -> None:
    """The same file name built small (the baseline, e.g. main's last build), then the
    same again (no significant change), then at 3x the resolution (a regression: the
    whole interval of the ratio is above +5%). The summary shows baseline, new figure,
    ratio, interval and verdict; each build leaves its latency.json."""
    small = _gated(tmp_path, 32)
    code, data, err = _build(small, capsys)
    assert code == 0, err
    records = json.loads((small / "dist" / "latency.json").read_text())["records"]
    [record] = records
    assert record["path"] == "net_fp32.tflite" and record["profile"] == "host"
    assert len(record["medians_ms"]) == 3 and record["device"] == "host"
    (tmp_path / "again").mkdir()
    again = _gated(tmp_path / "again", 32)  # a fresh build and cache: measured anew
    code, data, err = _build(again, capsys, "--baseline", str(small / "dist"))
    assert code == 0, err
    [check] = data["jobs"][0]["budgets"]
    assert check["metric"] == "regression_pct" and check["verdict"] != "regression"
    big = _gated(tmp_path, 96)
    code, data, err = _build(big, capsys, "--baseline", str(small / "dist" / "latency.json"))
    assert code == 1, err
    [check] = data["jobs"][0]["budgets"]
    assert check["verdict"] == "regression" and check["ci_low"] > 1.05 and not check["ok"]
    assert check["baseline_ms"] == pytest.approx(record["median_ms"])
    summary = (big / "dist" / "summary.md").read_text()
    assert f"vs baseline {record['median_ms']:.3f} ->" in summary and "regression" in summary
    code, out, err = run(["diff", str(small / "dist"), str(again / "dist"), "--json"], capsys)
    [row] = json.loads(out)["artifacts"]
    assert code == 0 and row["same_bytes"] is True and row["changes"] == {}  # reproducible
    code, out, err = run(["diff", str(small / "dist"), str(big / "dist"), "--json"], capsys)
    [row] = json.loads(out)["artifacts"]
    assert row["same_bytes"] is False and "macs" in row["changes"]  # same weights, 3x input
    assert row["changes"]["macs"]["new"] > 8 * row["changes"]["macs"]["old"]
    code, out, err = run(["diff", str(small / "dist" / "latency.json"),
                          str(big / "dist" / "latency.json")], capsys)
    assert code == 0 and "net_fp32.tflite: bytes differ" in out
    lat = next(line for line in out.splitlines() if "latency:" in line)
    assert float(lat.split(" x")[1].split()[0]) > 1.05 and "95% interval" in lat


def test_regression_gate_bad_baselines(tmp_path: Path, capsys) -> None:
    from helpers import error_line

    small = _gated(tmp_path, 32)
    code, _, err = _build(small, capsys, "--baseline", str(tmp_path / "nothing"))
    assert "--baseline" in error_line(code, err) and "no latency.json there" in err
    assert not (small / "dist").exists()  # checked before anything is built
    code, _, err = _build(small, capsys)
    assert code == 0, err
    other = _gated(tmp_path, 32, name="other")
    code, _, err = _build(other, capsys, "--baseline", str(small / "dist"))
    assert "--baseline has no latency of other_fp32.tflite on host" in error_line(code, err)
    stale = tmp_path / "stale.json"
    data = json.loads((small / "dist" / "latency.json").read_text())
    data["records"][0]["tools"]["tensorflow"] = "1.0.0"
    stale.write_text(json.dumps(data))
    code, _, err = _build(small, capsys, "--baseline", str(stale))
    assert "was measured with tensorflow 1.0.0" in error_line(code, err)
    (small / "mobilectl.toml").write_text((small / "mobilectl.toml").read_text().replace(
        "confidence = 0.95", "confidence = 1.5"))
    code, _, err = _build(small, capsys)
    assert "confidence' = 1.5 is not allowed: between 0 and 1" in error_line(code, err)
