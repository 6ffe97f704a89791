"""Latency prediction from a device's kernel table: one regressor per kernel type.

Each kernel type (``CONV_2D.1x1:int8``, ``DEPTHWISE_CONV_2D:fp32``, ...) gets a model a
user can read in two parts:

1. a roofline line fitted by non-negative least squares, ``ms = fixed + MACs / rate +
   bytes / bandwidth``: the kernel's fixed cost, its effective GMAC/s and GB/s on the
   device (the memory term is Ma et al.'s memory access cost, ShuffleNet V2, 2018);
2. gradient-boosted trees (scikit-learn, fixed seed) on the log of what the line
   leaves, from the log of the shape features (:data:`device_profiles.kernels.FEATURES`):
   the tiling, alignment and threading effects no line has (nn-Meter, Zhang et al.
   2021, fits such a per-kernel regressor).

A kernel's time is its table time less the table's invoke floor. Kernels timed alone
need not take their time in a network (alone, their weights and inputs stay in cache
between invokes; in a graph each op also waits for the last), so a second stage per
precision is chosen on the table's chains, random networks of the grid's units timed
whole: the kernels' own times, one scale, or ``scale x kernel time + a per-op cost +
bytes / a bandwidth``, the simplest that predicts the chains within a point of the best
left one out (no zoo network is used). Only chains of the zoo's size
(:data:`MIN_CHAIN_MS` and up) choose it: on chains of 0.1 ms the invoke overhead
dominates and the third form fitted a scale of 0.15, which no network of milliseconds
bears out. A model's prediction is the floor once plus its ops. An op whose kernel type
the table lacks is named and left out: the total is then a lower bound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_profiles import kernel_table
from device_profiles.kernel_table import ChainRow, KernelRow, KernelTable
from device_profiles.kernels import FEATURES, KernelOp, is_fused

MIN_MS = 1e-4  # a kernel time below this (0.1 us) is this
MIN_TREE_ROWS = 8  # fewer rows: the line alone
_BYTES = [FEATURES.index(f) for f in ("in_bytes", "out_bytes", "weight_bytes")]
_MACS = FEATURES.index("macs")


@dataclass(frozen=True)
class KernelFit:
    """What the regressor of one kernel type learned, for a person to read."""

    kernel: str
    rows: int
    fixed_us: float
    gmacs: float | None  # effective GMAC/s of the line (None: MACs do not count)
    gbs: float | None  # effective GB/s of the line
    rmspe: float  # in-sample root mean squared percentage error of the whole model
    trees: bool


def _line_inputs(features: np.ndarray) -> np.ndarray:
    ones = np.ones((features.shape[0], 1))
    macs = features[:, [_MACS]] / 1e6
    moved = features[:, _BYTES].sum(axis=1, keepdims=True) / 1e6
    return np.hstack([ones, macs, moved])


def _tree_inputs(features: np.ndarray) -> np.ndarray:
    return np.log1p(features)


class KernelModel:
    """The line and the trees of one kernel type."""

    def __init__(self, kernel: str, rows: Sequence[KernelRow], floor_ms: float) -> None:
        from scipy.optimize import nnls  # heavy: scipy
        from sklearn.ensemble import GradientBoostingRegressor  # heavy: scikit-learn

        features = np.array([r.features for r in rows], dtype=float)
        target = np.maximum(np.array([r.ms for r in rows]) - floor_ms, MIN_MS)
        self.kernel = kernel
        self.coef, _ = nnls(_line_inputs(features), target)
        base = self._line(features)
        self.trees = None
        if len(rows) >= MIN_TREE_ROWS:
            self.trees = GradientBoostingRegressor(
                n_estimators=150, max_depth=3, learning_rate=0.05, min_samples_leaf=2,
                random_state=0).fit(_tree_inputs(features), np.log(target / base))
        fitted = self.predict(features)
        self.fit = KernelFit(kernel, len(rows), 1e3 * self.coef[0], _rate(self.coef[1]),
                             _rate(self.coef[2]), float(np.sqrt(np.mean(
                                 ((fitted - target) / target) ** 2))), self.trees is not None)

    def _line(self, features: np.ndarray) -> np.ndarray:
        return np.maximum(_line_inputs(features) @ self.coef, MIN_MS)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted ms (floor excluded) of each row of ``features``."""
        base = self._line(features)
        if self.trees is None:
            return base
        return base * np.exp(self.trees.predict(_tree_inputs(features)))


def _rate(ms_per_million: float) -> float | None:
    """ms per million MACs (or bytes) as GMAC/s (GB/s); None for a zero coefficient."""
    return None if ms_per_million <= 0 else 1.0 / ms_per_million


@dataclass(frozen=True)
class InGraph:
    """The in-graph stage of one precision, fitted on the table's chains."""

    precision: str
    scale: float
    per_op_us: float
    gbs: float | None  # bandwidth of the bytes term (None: no such term)
    chains: int
    rmspe: float | None  # leave-one-out, of the chains' totals (None: no chains)
    form: str = "alone"  # which form the chains chose: alone, scale or line

    def apply(self, kernel_ms: float, moved_bytes: float) -> float:
        extra = moved_bytes / (self.gbs * 1e6) if self.gbs else 0.0
        return self.scale * kernel_ms + self.per_op_us / 1e3 + extra


ALONE = InGraph("any", 1.0, 0.0, None, 0, None, "alone")  # no chains: the kernels' own times
MIN_CHAINS = 6
MIN_CHAIN_MS = 0.5  # the chains that fit the in-graph stage (all, when fewer than MIN_CHAINS)


def _alone_form(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The kernels' own times, as they are."""
    return np.array([1.0, 0.0, 0.0])


def _scale_form(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One scale: the median ratio of whole to the sum of the kernels alone."""
    return np.array([float(np.median(y / x[:, 0])), 0.0, 0.0])


def _line_form(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Scale, per-op cost and bytes term, by non-negative least squares on the
    relative error."""
    from scipy.optimize import nnls  # heavy: scipy

    coef, _ = nnls(x / y[:, None], np.ones(len(y)))
    return coef


FORMS = (_alone_form, _scale_form, _line_form)  # simplest first
#: a richer form must beat every simpler one by more than this leave-one-out RMSPE (one
#: point). Set after a run where the three-term line won by 0.2 points (16.5% against
#: 16.7% for one scale) and its per-op cost of 1.4 us overpredicted the small networks
FORM_MARGIN = 0.01


def _leave_one_out(form, x: np.ndarray, y: np.ndarray) -> float:
    """RMSPE of ``form`` predicting each chain from the others."""
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errors.append(x[i] @ form(x[keep], y[keep]) / y[i] - 1)
    return float(np.sqrt(np.mean(np.square(errors))))


def _simplest(errors: dict[Callable, float]) -> Callable:
    """The first (simplest) of :data:`FORMS` within :data:`FORM_MARGIN` of the lowest
    leave-one-out error."""
    best = min(errors.values())
    return next(form for form in FORMS if errors[form] <= best + FORM_MARGIN)


def _sized(chains: Sequence[ChainRow]) -> list[ChainRow]:
    """The chains of :data:`MIN_CHAIN_MS` and up; all of them when too few are."""
    long = [c for c in chains if c.ms >= MIN_CHAIN_MS]
    return long if len(long) >= MIN_CHAINS else list(chains)


def _moved(features: Sequence[float]) -> float:
    return float(sum(features[i] for i in _BYTES))


@dataclass(frozen=True)
class OpPrediction:
    op: KernelOp
    ms: float | None  # None: no model for its kernel type


@dataclass(frozen=True)
class Prediction:
    """A model's predicted latency on the table's device."""

    ops: tuple[OpPrediction, ...]
    floor_ms: float

    @property
    def total_ms(self) -> float:
        return self.floor_ms + sum(p.ms or 0.0 for p in self.ops)

    @property
    def missing(self) -> tuple[str, ...]:
        """Kernel types with no model, in order of first use."""
        return tuple(dict.fromkeys(p.op.kernel for p in self.ops if p.ms is None))

    @property
    def lower_bound(self) -> bool:
        return bool(self.missing)


class Predictor:
    """Every kernel type of a table, fitted once."""

    def __init__(self, table: KernelTable) -> None:
        by_kernel: dict[str, list[KernelRow]] = {}
        for row in table.rows:
            by_kernel.setdefault(row.kernel, []).append(row)
        self.table = table
        self.floor_ms = table.floor_ms or 0.0
        self.models = {k: KernelModel(k, rows, self.floor_ms) for k, rows in sorted(by_kernel.items())}
        self.in_graph = {p: self._in_graph(p, [c for c in table.chains if c.precision == p])
                         for p in ("fp32", "int8")}

    def _alone(self, ops: Sequence[tuple[str, Sequence[float]]]) -> list[float | None]:
        """Each op's kernel time alone (None: no model for its kernel type; 0 for an op
        run inside another's kernel)."""
        times: list[float | None] = [0.0 if is_fused(k) else None for k, _ in ops]
        for kernel, model in self.models.items():
            chosen = [i for i, (k, _) in enumerate(ops) if k == kernel]
            if chosen:
                found = model.predict(np.array([ops[i][1] for i in chosen], dtype=float))
                for i, value in zip(chosen, found):
                    times[i] = float(value)
        return times

    def _in_graph(self, precision: str, chains: Sequence[ChainRow]) -> InGraph:
        """The in-graph stage of ``precision``: of the kernels' own times, one scale
        (the chains' median ratio) and scale + per-op cost + bandwidth (non-negative
        least squares on relative error), the simplest form within a point of the
        lowest leave-one-out error on the chains :func:`_sized` keeps
        (:func:`_simplest`); kernels alone with fewer than ``MIN_CHAINS`` chains."""
        rows, target = [], []
        for chain in _sized(chains):
            alone = self._alone(chain.ops)
            if None not in alone:
                rows.append([sum(alone), len(alone) / 1e3,
                             sum(_moved(f) for _, f in chain.ops) / 1e6])
                target.append(chain.ms - self.floor_ms)
        if len(rows) < MIN_CHAINS:
            return dataclasses.replace(ALONE, precision=precision)
        x, y = np.array(rows), np.array(target)
        errors = {form: _leave_one_out(form, x, y) for form in FORMS}
        best = _simplest(errors)
        coef = best(x, y)
        return InGraph(precision, float(coef[0]), float(coef[1]), _rate(coef[2]), len(rows),
                       errors[best], best.__name__.strip("_").removesuffix("_form"))

    @property
    def fits(self) -> tuple[KernelFit, ...]:
        return tuple(m.fit for m in self.models.values())

    def predict(self, ops: Sequence[KernelOp]) -> Prediction:
        """Each op's predicted ms in the graph, and the model's total."""
        alone = self._alone([(op.kernel, op.features) for op in ops])
        times = [None if t is None else 0.0 if op.fused else self.in_graph[
            op.kernel.rpartition(":")[2]].apply(t, _moved(op.features)) for op, t in zip(ops, alone)]
        return Prediction(tuple(OpPrediction(op, t) for op, t in zip(ops, times)), self.floor_ms)


_FITTED: dict[tuple[str, int, int], Predictor] = {}


def fitted(device: str) -> tuple[Predictor, Path]:
    """The predictor of ``device``'s kernel table and the table's file (a UserError says
    how to make one). Fitted once per process for each version of the file."""
    table, path = kernel_table.find(device)
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _FITTED:
        _FITTED[key] = Predictor(table)
    return _FITTED[key], path


def error_pct(predicted: float, measured: float) -> float:
    """Signed error of a prediction, in percent of the measurement."""
    return 100.0 * (predicted - measured) / measured if measured else math.nan
