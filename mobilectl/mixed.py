"""``mobilectl export --mixed --budget``: a precision per layer, chosen by measurement.

HAQ (Wang et al., 2019) picks each layer's bit width with the hardware in the loop.
Here the loop is plain and reproducible. Each weighted layer can take 4-bit weights,
int8, 16-bit activations or float (:mod:`quant.mixed`). The layers are ranked by the
int8 error each adds (:mod:`quant.sensitivity`), and, when latency is what is
minimised or budgeted, by that error per millisecond that float costs over int8 on
the device (per-layer timings from :mod:`device_profiles`). The ranking makes one
chain of recipes, from the cheapest (every layer at its smallest precision) to the
most accurate, one layer promoted one step at a time. A binary search along the
chain measures a few recipes for real: top-1 on ``--data`` (or agreement with the
float model's top-1 without labels), file size and, with latency, the median on the
device. It takes the cheapest recipe within an accuracy budget, or the most accurate
one within a size or latency budget. The chosen recipe is exported like any artifact,
verified, and listed per layer in the manifest and in ``mixed.json``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError
from mobilectl.core.files import check_out_dir, write_atomic
from mobilectl.core.types import Format, LayerPrecision, Precision

Progress = Callable[[str], None]
#: 4-bit weights: the verification limits against the float model (the budget, measured
#: on the data, is the accuracy check; 4-bit weights move outputs more than int8 does)
LOW_BIT_MIN_COSINE = 0.9
LOW_BIT_MIN_SQNR_DB = 6.0
MIN_DELTA_MS = 1e-3  # a layer float runs no slower than int8 costs at least this


class Axis(StrEnum):
    """What a budget limits or a search minimises."""

    ACCURACY = "accuracy"
    SIZE = "size"
    LATENCY = "latency"


_UNITS = {Axis.ACCURACY: {"pt": 1.0}, Axis.LATENCY: {"ms": 1.0, "s": 1000.0},
          Axis.SIZE: {"b": 1.0, "kb": 1e3, "mb": 1e6, "kib": 1024.0, "mib": 1024.0**2}}
_BUDGET = re.compile(r"^(accuracy|size|latency)=(-?[0-9]*\.?[0-9]+)([a-zA-Z]*)$")
BUDGET_FORMS = "accuracy=-1pt, size=2MB (B, KB, MB, KiB, MiB) or latency=5ms"


@dataclass(frozen=True)
class Budget:
    """``accuracy=-1pt`` (top-1 may drop 1 point), ``size=2MB``, ``latency=5ms``."""

    axis: Axis
    limit: float  # points of top-1 drop, bytes or milliseconds

    @classmethod
    def parse(cls, text: str) -> Budget:
        match = _BUDGET.match(text.strip().replace(" ", ""))
        if not match:
            raise UserError(f"--budget {text!r} is not allowed: {BUDGET_FORMS}")
        axis, number, unit = Axis(match[1]), float(match[2]), match[3].lower()
        factor = _UNITS[axis].get(unit)
        if factor is None:
            raise UserError(f"--budget {text!r}: unit {unit or '(none)'!r} is not allowed for "
                            f"{axis}: one of {', '.join(_UNITS[axis])}")
        if axis == Axis.ACCURACY and number > 0:
            raise UserError(f"--budget {text!r}: an accuracy budget is a drop, 0 or below "
                            "(e.g. accuracy=-1pt)")
        if axis != Axis.ACCURACY and number <= 0:
            raise UserError(f"--budget {text!r}: a {axis} budget is above 0")
        return cls(axis, abs(number) * factor)

    @property
    def text(self) -> str:
        return {Axis.ACCURACY: f"accuracy -{self.limit:g} pt", Axis.SIZE:
                f"size {self.limit / 1e6:.3g} MB", Axis.LATENCY: f"latency {self.limit:g} ms"}[self.axis]


@dataclass(frozen=True)
class Point:
    """One recipe of the chain, measured."""

    step: int  # promotions applied (0: the cheapest recipe)
    layers: tuple[tuple[str, LayerPrecision], ...]  # the layers not at int8
    top1: float
    drop_pt: float  # float top-1 minus this, in points
    bytes: int
    latency_ms: float | None = None

    def value(self, axis: Axis) -> float | None:
        return {Axis.ACCURACY: self.drop_pt, Axis.SIZE: float(self.bytes),
                Axis.LATENCY: self.latency_ms}[axis]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = {name: str(p) for name, p in self.layers}
        return data


@dataclass(frozen=True)
class MixedOptions:
    """What the search is for: the budget, what to minimise within an accuracy budget
    (None: latency) and the device profile to measure latency on."""

    budget: Budget
    minimise: Axis | None = None
    device: str = "host"

    @property
    def objective(self) -> Axis:
        """The axis the search improves within the budget."""
        if self.budget.axis != Axis.ACCURACY:
            return Axis.ACCURACY
        return self.minimise or Axis.LATENCY

    @property
    def cost_axis(self) -> Axis:
        """What makes a recipe cheap: the budgeted size or latency, or the one minimised."""
        return self.objective if self.budget.axis == Axis.ACCURACY else self.budget.axis

    @property
    def measures_latency(self) -> bool:
        return self.cost_axis == Axis.LATENCY

    def validate(self) -> None:
        if self.minimise is not None and self.budget.axis != Axis.ACCURACY:
            raise UserError(f"--minimise applies to an accuracy budget; a {self.budget.axis} "
                            "budget maximises accuracy")
        if self.minimise == Axis.ACCURACY:
            raise UserError("--minimise accuracy is not allowed: size or latency")


@dataclass(frozen=True)
class LayerChoice:
    """One weighted layer: its op, weights, int8 error and the precision chosen."""

    layer: str
    op: str
    weights: int
    rmse_steps: float
    delta_ms: float | None  # float minus int8 time on the device, if timed
    precision: LayerPrecision


@dataclass
class MixedResult:
    model: str
    budget: str
    objective: str
    device: str
    metric: str  # "top-1 on DATA" or "agreement with the float model's top-1"
    float_top1: float
    chosen: Point
    int8: Point
    met: bool
    verdict: str
    layers: list[LayerChoice]
    trace: list[Point]
    ranking: str  # how the chain was ordered
    written: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "budget": self.budget, "objective": self.objective,
                "device": self.device, "metric": self.metric, "float_top1": self.float_top1,
                "met": self.met, "verdict": self.verdict, "chosen": self.chosen.as_dict(),
                "uniform_int8": self.int8.as_dict(), "ranking": self.ranking,
                "layers": [{**asdict(c), "precision": str(c.precision)} for c in self.layers],
                "trace": [p.as_dict() for p in self.trace], "written": self.written}


class BudgetNotMet(UserError):
    """No recipe of the chain meets the budget (exit 1, with the best reachable point)."""


# ---- the chain ---------------------------------------------------------------------

def ladder(objective: Axis) -> tuple[LayerPrecision, ...]:
    """The precisions layers climb, cheapest first. For latency: int8 then float
    (LiteRT runs 16-bit activations and 4-bit weights with slower kernels than int8 and
    float, see BENCHMARKS.md); for size every precision, from 4-bit weights."""
    if objective == Axis.LATENCY:
        return (LayerPrecision.INT8, LayerPrecision.FLOAT)
    return tuple(LayerPrecision)


def chain(units: Sequence[Any], order: Sequence[int], objective: Axis, *,
          allowed: frozenset[LayerPrecision] = frozenset(LayerPrecision)
          ) -> list[tuple[tuple[str, LayerPrecision], ...]]:
    """Recipes from the cheapest to the most accurate. Every layer starts at the
    cheapest rung of the ladder it takes; each step lifts one layer, in ``order`` (unit
    indices, first lifted first), to the next rung, one rung for all at a time (a
    depthwise convolution, which takes no 4-bit weights, starts at int8)."""
    rungs = [p for p in ladder(objective) if p in allowed]  # what the format takes
    current = [next(p for p in rungs if p in u.choices) for u in units]
    recipes = [_recipe(units, current)]
    for rung in rungs[1:]:
        for index in order:
            below = rungs.index(current[index]) < rungs.index(rung)
            if below and rung in units[index].choices:
                current[index] = rung
                recipes.append(_recipe(units, current))
    return recipes


def _recipe(units: Sequence[Any], current: Sequence[LayerPrecision]
            ) -> tuple[tuple[str, LayerPrecision], ...]:
    return tuple(sorted((u.layer, p) for u, p in zip(units, current)
                        if p != LayerPrecision.INT8))


def order_of(units: Sequence[Any], errors: dict[str, float], delta_ms: dict[str, float] | None
             ) -> list[int]:
    """Units by what promoting them buys: int8 error per millisecond float costs over
    int8 when timed, else int8 error (ties: fewer weights first, then name)."""
    def score(i: int) -> tuple[float, int, str]:
        unit = units[i]
        error = errors.get(unit.layer, 0.0)
        if delta_ms is not None:
            error /= max(delta_ms.get(unit.layer, MIN_DELTA_MS), MIN_DELTA_MS)
        return (-error, unit.weights, unit.layer)
    return sorted(range(len(units)), key=score)


# ---- the search --------------------------------------------------------------------

def meets(point: Point, budget: Budget) -> bool:
    value = point.value(budget.axis)
    return value is not None and value <= budget.limit + 1e-9


def search(count: int, measure: Callable[[int], Point], budget: Budget, *,
           prefer: Axis | None = None) -> tuple[Point | None, list[Point]]:
    """Binary search along a chain of ``count`` recipes (cost rising, error falling):
    the first that meets an accuracy budget, or the last within a size or latency one.
    Where the chain breaks that order (a step that measured better than a later one),
    the best measured point within the budget on ``prefer`` is taken instead."""
    seen: dict[int, Point] = {}

    def at(k: int) -> Point:
        if k not in seen:
            seen[k] = measure(k)
        return seen[k]

    accuracy = budget.axis == Axis.ACCURACY
    cheap, dear = (0, count - 1) if accuracy else (count - 1, 0)
    if meets(at(cheap), budget):  # the cheapest within accuracy, the most accurate within cost
        return _best(at(cheap), seen, budget, prefer), _trace(seen)
    if not meets(at(dear), budget):
        return None, _trace(seen)
    lo, hi = 0, count - 1  # accuracy: lo misses, hi meets; else: lo meets, hi misses
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(at(mid), budget) == accuracy:
            hi = mid
        else:
            lo = mid
    return _best(at(hi if accuracy else lo), seen, budget, prefer), _trace(seen)


def _best(found: Point, seen: dict[int, Point], budget: Budget, prefer: Axis | None) -> Point:
    """``found``, or a measured point within the budget that is better on ``prefer``
    (ties: the earlier step, the cheaper recipe)."""
    if prefer is None:
        return found
    within = [p for p in seen.values() if meets(p, budget) and p.value(prefer) is not None]
    return min(within, key=lambda p: (p.value(prefer), p.step), default=found)


def _trace(seen: dict[int, Point]) -> list[Point]:
    return [seen[k] for k in sorted(seen)]


def best_reachable(trace: Sequence[Point], budget: Budget) -> Point:
    """The measured point closest to the budget on its axis."""
    return min(trace, key=lambda p: p.value(budget.axis) or float("inf"))


# ---- the workflow ------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """What a recipe's accuracy is measured on."""

    x: np.ndarray
    y: np.ndarray
    metric: str
    float_top1: float


def evaluation(source: Any, held_out: np.ndarray, data: Any | None) -> Evaluation:
    """Labelled data (``data``: a :class:`~mobilectl.evaluate.DataSource`) when given,
    else the held-out inputs labelled by the float model (top-1 agreement)."""
    from mobilectl.evaluate import top_k  # lazy: the stack below loads when a search runs

    resolution = int(source.model.input.shape[1])
    if data is not None:
        part = data.evaluated(resolution=resolution, normalization=source.normalization)
        x, y, metric = part.x, part.y, f"top-1 on {data.data}"
        scores = _predict(source.model, x)
    else:
        x, metric = held_out, "top-1 agreement with the float model"
        scores = _predict(source.model, x)
        y = np.argmax(scores, axis=-1)
    return Evaluation(x.astype(np.float32), y, metric, top_k(scores, y, 1))


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    from mobilectl.core.tfenv import third_party_output  # lazy: the stack below loads when a search runs

    with third_party_output():
        return np.asarray(model.predict(x, batch_size=64, verbose=0))


@dataclass(frozen=True)
class Maker:
    """How a search makes and runs one format's artifact for a recipe."""

    fmt: Format
    convert: Callable[[tuple[tuple[str, LayerPrecision], ...]], bytes]
    run: Callable[[bytes, np.ndarray], np.ndarray]


class Measurer:
    """Makes and measures the recipes of one search (one format, one device)."""

    def __init__(self, *, maker: Maker, found: Sequence[Any], evaluation: Evaluation,
                 profile: Any | None, device: str, work: Path, model: str,
                 progress: Progress) -> None:
        self.maker, self.found = maker, found
        self.evaluation, self.profile, self.device = evaluation, profile, device
        self.work, self.model, self.progress = work, model, progress

    def quantized(self, layers: tuple[tuple[str, LayerPrecision], ...]) -> bytes:
        return self.maker.convert(layers)

    def point(self, step: int, layers: tuple[tuple[str, LayerPrecision], ...]) -> Point:
        from mobilectl.evaluate import top_k  # lazy: the stack below loads when a search runs

        data = self.quantized(layers)
        top1 = top_k(self.maker.run(data, self.evaluation.x), self.evaluation.y, 1)
        latency = self.latency(data, f"step{step}") if self.profile is not None else None
        point = Point(step, layers, top1, round(100 * (self.evaluation.float_top1 - top1), 6),
                      len(data), latency)
        label = f"recipe {step}" if step >= 0 else "uniform int8"
        self.progress(f"{label}: {len(layers)} layer(s) off int8, top-1 {top1:.3f}, "
                      f"{len(data) / 1e6:.2f} MB"
                      + (f", {latency:.3f} ms" if latency is not None else ""))
        return point

    def _measured(self, data: bytes, name: str, *, per_layer: bool) -> Any:
        from device_profiles.harness import Artifact, ProfileOptions, measure  # lazy: the stack below loads when a search runs

        path = self.work / f"{name}.{self.maker.fmt}"
        path.write_bytes(data)
        artifact = Artifact(path, self.model, self.maker.fmt, Precision.INT8)
        result = measure([artifact], self.profile, ProfileOptions(
            device=self.device, per_layer=per_layer, out=self.work / "profile"), lambda s: None)
        if result.failures or not result.measurements:
            raise UserError(f"--device {self.device}: {name} could not be measured: "
                            f"{(result.failures or ['no measurement'])[0]}")
        return result.measurements[0]

    def latency(self, data: bytes, name: str) -> float:
        return float(self._measured(data, name, per_layer=False).latency.median_ms)

    def delta_ms(self) -> dict[str, float] | None:
        """Per layer, float time minus int8 time on the device (None: no per-layer
        table there)."""
        times = []
        for name, layers in (("int8", ()), ("float", tuple(sorted(
                (u.layer, LayerPrecision.FLOAT) for u in self.found)))):
            table = self._measured(self.quantized(layers), f"per-layer-{name}",
                                   per_layer=True).per_layer
            if table is None:
                return None
            times.append(self._by_layer(table))
        return {layer: times[1].get(layer, 0.0) - times[0].get(layer, 0.0)
                for layer in times[0]}

    def _by_layer(self, table: Any) -> dict[str, float]:
        known = {u.layer for u in self.found}
        out: dict[str, float] = {}
        for row in table.rows:
            owner = [n for n in row.layers if n in known]
            if owner and row.ms is not None:
                out[owner[-1]] = out.get(owner[-1], 0.0) + float(row.ms)
        return out


def _errors(model: Any, calibration: np.ndarray) -> dict[str, float]:
    """Each layer's worst int8 error (rmse in quantization steps) over the ops it is in."""
    from quant.sensitivity import layer_sensitivity  # lazy: the stack below loads when a search runs

    errors: dict[str, float] = {}
    for row in layer_sensitivity(model, calibration):
        for name in row.layers:
            errors[name] = max(errors.get(name, 0.0), row.rmse_steps)
    return errors


def mixed_export(target: str, *, mixed: MixedOptions, options: Any, out: Path,
                 knobs: dict[str, Any] | None = None, weights: str | None = None,
                 data: Any | None = None, progress: Progress = lambda s: None) -> MixedResult:
    """Search a recipe for ``target`` within ``mixed.budget`` in the one format of
    ``options`` (int8), export it into ``out`` and write ``mixed.json`` beside it."""
    from device_profiles.profile import load_profile  # lazy: the stack below loads when a search runs
    from exporter.pipeline import build_or_load, calibrate, export  # lazy: the stack below loads when a search runs

    options = _checked(mixed, options, out, data)
    profile = load_profile(mixed.device) if mixed.measures_latency else None
    progress(f"build {target}")
    source = build_or_load(target, knobs=knobs, weights=weights, seed=options.seed)
    calib = calibrate(source, options)
    judged = evaluation(source, calib.held_out, data)
    progress("rank the layers by their int8 error (quantization debugger)")
    errors = _errors(source.model, calib.calibration)
    maker, found, allowed = _maker(source, calib.calibration, options)
    with tempfile.TemporaryDirectory(prefix="mobilectl-mixed-") as tmp:
        measurer = Measurer(maker=maker, found=found, evaluation=judged, profile=profile,
                            device=mixed.device, work=Path(tmp), model=source.name,
                            progress=progress)
        delta = None
        if mixed.measures_latency:
            progress(f"time every layer in int8 and in float on {mixed.device}")
            delta = measurer.delta_ms()
        recipes = chain(found, order_of(found, errors, delta), mixed.cost_axis, allowed=allowed)
        progress(f"search {len(recipes)} recipes for {mixed.budget.text}")
        chosen, trace = search(len(recipes), lambda k: measurer.point(k, recipes[k]),
                               mixed.budget, prefer=mixed.objective)
        int8 = next((p for p in trace if not p.layers), None) or measurer.point(-1, ())
    if chosen is None:
        raise BudgetNotMet(f"--budget {mixed.budget.text} cannot be met: the best reachable "
                           f"recipe has {_describe(best_reachable(trace, mixed.budget))}")
    result = MixedResult(source.name, mixed.budget.text, str(mixed.objective), mixed.device,
                         judged.metric, judged.float_top1, chosen, int8, True,
                         verdict(chosen, int8, mixed), _choices(found, errors, delta, chosen),
                         trace, "int8 error per ms float costs over int8 on " + mixed.device
                         if delta else "int8 error (quantization debugger)")
    result.written = _export_chosen(target, options, chosen, out=out, knobs=knobs,
                                    weights=weights, progress=progress, export=export)
    write_atomic(out / "mixed.json", (json.dumps(result.as_dict(), indent=2, sort_keys=True)
                                      + "\n").encode())
    return result


def _checked(mixed: MixedOptions, options: Any, out: Path, data: Any | None) -> Any:
    """Every check that needs no model, before slow work; the int8 options."""
    from exporter import formats  # lazy: the stack below loads when a search runs
    from quant.calibration import check_source  # lazy: the stack below loads when a search runs

    mixed.validate()
    options = replace(options, precision=Precision.INT8)
    if len(options.formats) != 1:
        raise UserError(f"--mixed searches one format at a time, not "
                        f"{','.join(options.formats)}: give --format tflite or --format onnx")
    formats.check(replace(options, layer_precisions=(("any", LayerPrecision.FLOAT),)))
    if options.keep_float:
        raise UserError("--keep-float and --mixed both choose float layers: give one")
    check_out_dir(out)
    check_source(options.calib)
    if data is not None:
        data.check()
    return options


def _maker(source: Any, calibration: np.ndarray, options: Any
           ) -> tuple[Maker, list[Any], frozenset[LayerPrecision]]:
    """How the search makes its format's artifacts, the weighted layers it chooses for,
    and the precisions the format takes. TFLite quantizes one float file (with the
    artifact's metadata, so sizes are the written files'); other formats convert
    through their table row."""
    from exporter import formats  # lazy: the stack below loads when a search runs
    from exporter.pipeline import metadata_for  # lazy: the stack below loads when a search runs
    from exporter.tflite import embed_metadata  # lazy: the stack below loads when a search runs
    from quant.mixed import float_flatbuffer, quantize, units, weighted_layers  # lazy: the stack below loads when a search runs

    fmt = options.formats[0]
    row = formats.get(fmt)
    metadata = metadata_for(source, options, row)
    flat = embed_metadata(float_flatbuffer(source.model), metadata)
    found = units(flat, weighted=weighted_layers(source.model))
    if fmt == Format.TFLITE:
        convert = lambda layers: quantize(flat, calibration, found=found, layers=dict(layers))  # noqa: E731
    else:
        convert = lambda layers: row.convert(  # noqa: E731
            source.model, options=replace(options, layer_precisions=layers),
            calibration=calibration, metadata=metadata, progress=lambda s: None)
    run = lambda data, x: row.run(data, x, layout=row.layout(options))  # noqa: E731
    return Maker(fmt, convert, run), found, row.layer_precisions


def _export_chosen(target: str, options: Any, chosen: Point, *, out: Path,
                   knobs: dict[str, Any] | None, weights: str | None, progress: Progress,
                   export: Callable[..., Any]) -> list[str]:
    """The chosen recipe through the export pipeline (verified, in the manifest)."""
    thresholds = options.thresholds
    if any(p == LayerPrecision.INT4_WEIGHTS for _, p in chosen.layers):
        thresholds = replace(thresholds,
                             min_cosine=min(thresholds.min_cosine, LOW_BIT_MIN_COSINE),
                             min_sqnr_db=min(thresholds.min_sqnr_db, LOW_BIT_MIN_SQNR_DB))
    done = export(target, knobs=knobs, weights=weights, out=out, progress=progress,
                  options=replace(options, layer_precisions=chosen.layers,
                                  thresholds=thresholds))
    return [entry.path for entry in done.entries]


def _describe(point: Point) -> str:
    latency = f", {point.latency_ms:.3f} ms" if point.latency_ms is not None else ""
    return f"a top-1 drop of {point.drop_pt:.2f} pt, {point.bytes / 1e6:.3f} MB{latency}"


def verdict(chosen: Point, int8: Point, mixed: MixedOptions) -> str:
    """One sentence: the chosen recipe against uniform int8 on the budgeted axis."""
    axis = mixed.objective
    ours, theirs = chosen.value(axis), int8.value(axis)
    if not chosen.layers:
        return "uniform int8 is the recipe: " + {
            Axis.LATENCY: "no layer off int8 is faster on this device",
            Axis.SIZE: "it meets the budget and nothing smaller does"}.get(
                axis, "the most accurate recipe measured within the budget")
    if not meets(int8, mixed.budget):
        return f"uniform int8 misses the budget ({_describe(int8)}); the recipe meets it"
    if ours is not None and theirs is not None and ours < theirs:
        return (f"beats uniform int8 on {axis}: {_fmt(axis, ours)} against "
                f"{_fmt(axis, theirs)}")
    return (f"does not beat uniform int8 on {axis} ({_fmt(axis, ours)} against "
            f"{_fmt(axis, theirs)})" + (": no recipe with layers off int8 ran faster on "
                                        "this device" if axis == Axis.LATENCY else ""))


def _fmt(axis: Axis, value: float | None) -> str:
    if value is None:
        return "unknown"
    return {Axis.ACCURACY: f"{value:.2f} pt drop", Axis.SIZE: f"{value / 1e6:.3f} MB",
            Axis.LATENCY: f"{value:.3f} ms"}[axis]


def _choices(found: Sequence[Any], errors: dict[str, float], delta: dict[str, float] | None,
             chosen: Point) -> list[LayerChoice]:
    picked = dict(chosen.layers)
    return [LayerChoice(u.layer, u.op, u.weights, round(errors.get(u.layer, 0.0), 6),
                        None if delta is None else round(delta.get(u.layer, 0.0), 6),
                        picked.get(u.layer, LayerPrecision.INT8)) for u in found]
