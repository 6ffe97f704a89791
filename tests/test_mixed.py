"""Mixed precision per layer (``export --mixed --budget``): budgets, the recipe chain,
the search, and real searches on a model trained on the digits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mobilectl.core.errors import UserError
from mobilectl.core.types import LayerPrecision as LP
from mobilectl.mixed import Axis, Budget, MixedOptions, Point, chain, search, verdict


# ---- budgets -----------------------------------------------------------------------

@pytest.mark.parametrize("text, axis, limit", [
    ("accuracy=-1pt", Axis.ACCURACY, 1.0), ("accuracy=-0.5pt", Axis.ACCURACY, 0.5),
    ("size=2MB", Axis.SIZE, 2e6), ("size=300KiB", Axis.SIZE, 300 * 1024.0),
    ("latency=5ms", Axis.LATENCY, 5.0), ("latency=0.5s", Axis.LATENCY, 500.0)])
def test_budget_parses(text: str, axis: Axis, limit: float) -> None:
    budget = Budget.parse(text)
    assert budget.axis == axis and budget.limit == pytest.approx(limit)


@pytest.mark.parametrize("text, says", [
    ("accuracy=1pt", "a drop, 0 or below"), ("size=2XB", "unit 'xb'"),
    ("size=0MB", "above 0"), ("speed=3ms", "is not allowed"), ("latency=5", "unit '(none)'"),
    ("accuracy=-1%", "is not allowed")])
def test_budget_refuses(text: str, says: str) -> None:
    with pytest.raises(UserError, match=None) as caught:
        Budget.parse(text)
    assert says in str(caught.value) and text in str(caught.value)


def test_minimise_only_with_an_accuracy_budget() -> None:
    with pytest.raises(UserError, match="--minimise applies to an accuracy budget"):
        MixedOptions(Budget.parse("size=1MB"), Axis.SIZE).validate()
    assert MixedOptions(Budget.parse("size=1MB")).cost_axis == Axis.SIZE
    assert MixedOptions(Budget.parse("accuracy=-1pt")).cost_axis == Axis.LATENCY


# ---- the chain ---------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    layer: str
    op: str
    weights: int = 10

    @property
    def choices(self) -> tuple[LP, ...]:
        low = (LP.INT4_WEIGHTS,) if self.op != "DEPTHWISE_CONV_2D" else ()
        return (*low, LP.INT8, LP.INT16_ACTIVATIONS, LP.FLOAT)


UNITS = [Unit("a.conv", "CONV_2D"), Unit("b.dw", "DEPTHWISE_CONV_2D"), Unit("c.fc", "FULLY_CONNECTED")]


def test_size_chain_climbs_rung_by_rung_in_order() -> None:
    recipes = chain(UNITS, [2, 0, 1], Axis.SIZE)
    assert recipes[0] == (("a.conv", LP.INT4_WEIGHTS), ("c.fc", LP.INT4_WEIGHTS))
    assert recipes[1] == (("a.conv", LP.INT4_WEIGHTS),)  # c.fc first to int8
    assert recipes[2] == ()  # then a.conv: uniform int8
    assert recipes[3] == (("c.fc", LP.INT16_ACTIVATIONS),)
    assert recipes[-1] == tuple((u.layer, LP.FLOAT) for u in sorted(UNITS, key=lambda u: u.layer))
    assert len(recipes) == 1 + 2 + 3 + 3  # each layer lifted once per rung above its start


def test_latency_chain_is_int8_then_float() -> None:
    recipes = chain(UNITS, [1, 0, 2], Axis.LATENCY)
    assert recipes == [(), (("b.dw", LP.FLOAT),), (("a.conv", LP.FLOAT), ("b.dw", LP.FLOAT)),
                       (("a.conv", LP.FLOAT), ("b.dw", LP.FLOAT), ("c.fc", LP.FLOAT))]


# ---- the search --------------------------------------------------------------------

def _points(drops: list[float], sizes: list[int]):
    calls: list[int] = []

    def measure(k: int) -> Point:
        calls.append(k)
        return Point(k, (), 1 - drops[k] / 100, drops[k], sizes[k])
    return measure, calls


DROPS = [5.0, 4.0, 3.0, 2.0, 1.5, 0.8, 0.5, 0.2, 0.0]
SIZES = [100, 110, 120, 130, 140, 150, 160, 170, 180]


def test_accuracy_budget_finds_the_cheapest_within_it() -> None:
    measure, calls = _points(DROPS, SIZES)
    chosen, trace = search(len(DROPS), measure, Budget.parse("accuracy=-1pt"))
    assert chosen is not None and chosen.step == 5
    assert len(calls) < len(DROPS) and [p.step for p in trace] == sorted(set(calls))


def test_size_budget_finds_the_most_accurate_within_it() -> None:
    measure, _ = _points(DROPS, SIZES)
    chosen, _ = search(len(DROPS), measure, Budget(Axis.SIZE, 145))
    assert chosen is not None and chosen.step == 4


def test_unreachable_budget_gives_none() -> None:
    measure, _ = _points(DROPS, SIZES)
    assert search(len(DROPS), measure, Budget(Axis.SIZE, 99))[0] is None
    measure, _ = _points([d + 1 for d in DROPS], SIZES)
    assert search(len(DROPS), measure, Budget.parse("accuracy=-0.5pt"))[0] is None


def test_verdict_against_uniform_int8() -> None:
    int8 = Point(-1, (), 0.9, 0.5, 200, 1.0)
    smaller = Point(3, (("a.conv", LP.INT4_WEIGHTS),), 0.9, 0.6, 150, 1.2)
    size = MixedOptions(Budget.parse("accuracy=-1pt"), Axis.SIZE)
    assert verdict(smaller, int8, size).startswith("beats uniform int8 on size")
    assert "does not beat" in verdict(smaller, int8, MixedOptions(Budget.parse("accuracy=-1pt")))
    assert "misses the budget" in verdict(smaller, int8, MixedOptions(Budget.parse("accuracy=-0.2pt")))


# ---- real searches -------------------------------------------------------------------

def _cli(args: list[str]) -> int:
    from mobilectl.cli import main

    with pytest.raises(SystemExit) as done:
        main(args)
    return int(done.value.code or 0)


def _model_args(digits_model: dict) -> list[str]:
    k = digits_model["knobs"]
    return ["mobilenet_v1", "-w", str(k["width_multiplier"]), "-r", str(k["resolution"]),
            "--num-classes", str(k["num_classes"]), "--weights", digits_model["weights"],
            "--calib", digits_model["calib"]]


@pytest.fixture(scope="module")
def digits_val(digits_model: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits the model was not trained on, labelled (the tail of the set)."""
    from models_keras.training import digits_pixels

    pixels, labels = digits_pixels()
    path = tmp_path_factory.mktemp("mixed") / "val.npz"
    np.savez(path, x=pixels[1400:], y=labels[1400:])
    return path


@pytest.fixture(scope="module")
def size_search(digits_model: dict, digits_val: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mixed") / "size"
    code = _cli(["export", *_model_args(digits_model), "--mixed", "--budget", "accuracy=-1pt",
                 "--minimise", "size", "--data", str(digits_val), "--out", str(out)])
    assert code == 0
    return out


def test_size_search_meets_its_budget_and_beats_int8(size_search: Path, digits_val: Path) -> None:
    from exporter.tflite import run
    from mobilectl.evaluate import top_k

    report = json.loads((size_search / "mixed.json").read_text())
    entry = json.loads((size_search / "manifest.json").read_text())["artifacts"][0]
    assert entry["quantization"]["layers"] == report["chosen"]["layers"]
    assert "w4a8" in entry["quantization"]["layers"].values()
    assert report["chosen"]["bytes"] == entry["bytes"] < report["uniform_int8"]["bytes"]
    # the artifact as written, measured again here: within the budget
    data = np.load(digits_val)
    x = (data["x"].astype(np.float32) - 127.5) / 127.5  # the model's normalisation
    top1 = top_k(run((size_search / entry["path"]).read_bytes(), x), data["y"], 1)
    assert top1 == pytest.approx(report["chosen"]["top1"])
    assert 100 * (report["float_top1"] - top1) <= 1.0 + 1e-9


def test_same_inputs_same_recipe_and_bytes(size_search: Path, digits_model: dict,
                                           digits_val: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert _cli(["export", *_model_args(digits_model), "--mixed", "--budget", "accuracy=-1pt",
                 "--minimise", "size", "--data", str(digits_val), "--out", str(again)]) == 0
    assert (again / "mixed.json").read_bytes() == (size_search / "mixed.json").read_bytes()
    name = json.loads((again / "manifest.json").read_text())["artifacts"][0]["path"]
    assert (again / name).read_bytes() == (size_search / name).read_bytes()


def test_unreachable_budget_exits_1_and_writes_nothing(digits_model: dict, tmp_path: Path,
                                                        capsys) -> None:
    out = tmp_path / "none"
    assert _cli(["export", *_model_args(digits_model), "--mixed", "--budget", "size=20KB",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --budget size 0.02 MB cannot be met: the best reachable")
    assert "MB" in err and not out.exists()


def test_latency_budget_on_the_host(digits_model: dict, digits_val: Path, tmp_path: Path) -> None:
    """Per-layer timings of int8 and float on the host rank the layers; a generous
    latency budget takes the most accurate recipe, measured."""
    out = tmp_path / "latency"
    assert _cli(["export", *_model_args(digits_model), "--mixed", "--budget", "latency=2s",
                 "--data", str(digits_val), "--out", str(out), "--device", "host"]) == 0
    report = json.loads((out / "mixed.json").read_text())
    assert report["chosen"]["latency_ms"] > 0 and report["ranking"].startswith("int8 error per ms")
    assert all(c["delta_ms"] is not None for c in report["layers"])
    assert set(report["chosen"]["layers"].values()) == {"float"}  # the most accurate rung


def test_library_refuses_a_bad_layer(digits_model: dict, tmp_path: Path) -> None:
    from exporter.pipeline import ExportOptions, export

    with pytest.raises(UserError, match="no convolution or dense layer"):
        export("mobilenet_v1", knobs=digits_model["knobs"], out=tmp_path / "x",
               options=ExportOptions(precision="int8", formats=("tflite",),
                                     layer_precisions=(("stem.convv", "float"),)))
    with pytest.raises(UserError, match="ONNX takes float, int8 per layer, not w4a8"):
        export("mobilenet_v1", knobs=digits_model["knobs"], out=tmp_path / "y",
               options=ExportOptions(precision="int8", formats=("onnx",),
                                     layer_precisions=(("stem.conv", "w4a8"),)))
    with pytest.raises(UserError, match="layer stem.conv 'w2' is not allowed"):
        ExportOptions(precision="int8", layer_precisions=(("stem.conv", "w2"),))


@pytest.mark.parametrize("args, says", [
    (["--budget", "size=1MB"], "apply with --mixed"),
    (["--mixed"], "--mixed needs --budget"),
    (["--mixed", "--budget", "size=1MB", "--format", "tflite,onnx"], "one format at a time"),
    (["--mixed", "--budget", "accuracy=-1pt", "--minimise", "speed"], "size or latency"),
    (["--mixed", "--budget", "size=1MB", "--keep-float", "stem.conv"], "give one"),
    (["--mixed", "--budget", "latency=1ms", "--device", "nosuchphone"], "nosuchphone"),
])
def test_bad_input_one_line_exit_2(args: list[str], says: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bad"
    assert _cli(["export", "mobilenet_v1", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and says in err[0]
    assert not out.exists()


def test_onnx_search_chooses_between_int8_and_float(digits_model: dict, digits_val: Path,
                                                    tmp_path: Path) -> None:
    """ONNX takes int8 or float per layer (onnxruntime's excluded nodes): a size budget
    between uniform int8 and float gives the most accurate recipe measured within it."""
    out = tmp_path / "onnx"
    assert _cli(["export", *_model_args(digits_model), "--mixed", "--budget", "size=0.5MB",
                 "--format", "onnx", "--data", str(digits_val), "--out", str(out)]) == 0
    report = json.loads((out / "mixed.json").read_text())
    [entry] = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert entry["format"] == "onnx" and entry["bytes"] <= 0.5e6
    assert set(report["chosen"]["layers"].values()) <= {"float"}
    assert entry["quantization"].get("layers", {}) == report["chosen"]["layers"]
    within = [p for p in report["trace"] if p["bytes"] <= 0.5e6]
    assert report["chosen"]["drop_pt"] == min(p["drop_pt"] for p in within)
    assert len(report["trace"]) >= 3  # float (too big), int8 and the binary search between
