"""The CLI: fast start, tables and JSON, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobilectl import __version__
from helpers import run
from models_keras import build_model
from models_keras.analysis import analyze_model



def test_help_and_version_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from mobilectl.cli import main\n"
        "for argv in (['--help'], ['--version'], ['info', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "print('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "TF False False" in done.stdout
    assert f"mobilectl {__version__}" in done.stdout


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "--json"], capsys)
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["mobilenet_v1"]["macs_m"] == 569 and rows["mobilenet_v1"]["input"] == 224
    assert rows["mobilenet_v2"]["knobs"]["width_multiplier"]["allowed"].startswith("one of 0.35")


def test_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models"], capsys)
    assert code == 0 and "mobilenet_v2" in out and "569M" in out


def test_info_json_matches_analysis(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["info", "mobilenet_v2", "-w", "0.5", "--per-layer", "--json"], capsys)
    info = json.loads(out)
    cost = analyze_model(build_model("mobilenet_v2", width_multiplier=0.5))
    assert code == 0
    assert info["macs"] == cost.macs and info["params"]["total"] == cost.params
    assert info["paper"]["macs_m"] == 97 and abs(info["paper"]["macs_delta_pct"]) < 1
    assert info["peak_activation_bytes"]["float32"] == 4 * info["peak_activation_bytes"]["int8"]
    assert [row["name"] for row in info["layers"]][:2] == ["input", "stem.conv"]


def test_info_table_per_layer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["info", "mobilenet_v1", "-w", "0.25", "-r", "128", "--per-layer"], capsys)
    assert code == 0 and "stage4.unit6.pw.conv" in out and "memory access int8" in out


@pytest.mark.parametrize("argv, needle", [
    (["info", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["info", "mobilenet_v3"], "did you mean 'mobilenet_v"),
    (["info", "mobilenet_v1", "--width-multiplier", "0"], "width_multiplier=0.0 is not allowed"),
    (["info", "mobilenet_v1", "--width-multiplier", "7"], "width_multiplier=7.0 is not allowed"),
    (["info", "mobilenet_v1", "--resolution", "-1"], "resolution=-1 is not allowed"),
    (["info", "mobilenet_v2", "--groups", "3"], "takes no knob 'groups'"),
    (["info", "mobilenet_v2", "--resolution", "abc"], "'--resolution'"),
])
def test_bad_input_is_one_line_exit_2(argv: list[str], needle: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_console_script_bad_width_real_process() -> None:
    done = subprocess.run(["mobilectl", "info", "mobilenet_v1", "-w", "7"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: width_multiplier=7.0 is not allowed for mobilenet_v1: one of 0.25, 0.5, 0.75, 1.0"
    ]
