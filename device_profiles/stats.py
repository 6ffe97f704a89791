"""Latency a team can gate on: repetitions, a bootstrap interval and a verdict.

One benchmark run's samples are not independent of the state the device was in
(clock, temperature, what else ran), so each *repetition* is a fresh benchmark
process whose median is one observation; a measurement is a set of repetitions. The
median of the repetitions gets a percentile-bootstrap confidence interval (Efron and
Tibshirani 1993, ch. 13), seeded, so the same repetitions always give the same
interval. Repetitions continue until the interval is narrower than a target or a cap
is reached (:class:`RepeatPolicy`), and the report says which.

Two measurements compare through the ratio of their medians, with a bootstrap
interval of that ratio from the two sets resampled independently
(:func:`ratio_interval`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import numpy as np

from mobilectl.core.errors import UserError

RESAMPLES = 4000
SEED = 0
DEFAULT_REPS = 3
COMPARE_REPS = 5  # a ratio of two medians: with 3 a side, A against itself can look different
ADAPTIVE_MAX_REPS = 10  # the cap when only --target-ci is given
STABLE_CI_PCT = 5.0  # without a target: an interval up to this wide is "stable"
UNSTABLE_CI_PCT = 15.0  # an interval wider than this is "unstable" (between: "wide")


@dataclass(frozen=True)
class RepeatPolicy:
    """How many repetitions: at least ``min_reps``; more, up to ``max_reps``, while the
    interval's width is above ``target_ci_pct`` percent of the median."""

    min_reps: int = DEFAULT_REPS
    max_reps: int = DEFAULT_REPS
    target_ci_pct: float | None = None
    confidence: float = 0.95

    @classmethod
    def of_flags(cls, *, min_reps: int | None, max_reps: int | None,
                 target_ci_pct: float | None, confidence: float = 0.95,
                 default_reps: int = DEFAULT_REPS) -> RepeatPolicy:
        """From ``--min-reps/--max-reps/--target-ci/--confidence``, checked up front."""
        low = default_reps if min_reps is None else min_reps
        cap = max_reps if max_reps is not None else (
            max(low, ADAPTIVE_MAX_REPS) if target_ci_pct is not None else low)
        policy = cls(low, cap, target_ci_pct, confidence)
        policy.validate()
        return policy

    def validate(self) -> None:
        if self.min_reps < 1:
            raise UserError(f"--min-reps {self.min_reps} is not allowed: 1 or more")
        if self.max_reps < self.min_reps:
            raise UserError(f"--max-reps {self.max_reps} is not allowed: at least --min-reps "
                            f"({self.min_reps})")
        if self.target_ci_pct is not None and not 0 < self.target_ci_pct < 100:
            raise UserError(f"--target-ci {self.target_ci_pct:g} is not allowed: a percentage "
                            "of the median between 0 and 100 (e.g. 2)")
        if not 0 < self.confidence < 1:
            raise UserError(f"--confidence {self.confidence:g} is not allowed: between 0 and 1 "
                            "(e.g. 0.95)")

    def done(self, medians: Sequence[float]) -> bool:
        """Whether ``medians`` are enough repetitions."""
        if len(medians) < self.min_reps:
            return False
        if len(medians) >= self.max_reps or self.target_ci_pct is None:
            return True
        width = interval_width_pct(medians, confidence=self.confidence)
        return width is not None and width <= self.target_ci_pct


def _bootstrap_medians(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The medians of ``RESAMPLES`` resamples of ``data`` with replacement."""
    return np.median(data[rng.integers(0, data.size, (RESAMPLES, data.size))], axis=1)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``samples``."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _width_pct(interval: tuple[float, float] | None, middle: float) -> float | None:
    """An interval's width in percent of ``middle`` (None without an interval)."""
    return None if interval is None or middle <= 0 else 100 * (interval[1] - interval[0]) / middle


def median_interval(values: Sequence[float], *, confidence: float = 0.95
                    ) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the median (None below two values)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None
    return _percentiles(_bootstrap_medians(data, np.random.default_rng(SEED)), confidence)


def interval_width_pct(values: Sequence[float], *, confidence: float = 0.95) -> float | None:
    """The interval's width in percent of the median."""
    middle = float(np.median(values)) if len(values) else 0.0
    return _width_pct(median_interval(values, confidence=confidence), middle)


def ratio_interval(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
                   ) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of median(a) / median(b), each set resampled on its
    own (None when either has fewer than two values)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return None
    rng = np.random.default_rng(SEED)
    top = _bootstrap_medians(x, rng)
    return _percentiles(top / _bootstrap_medians(y, rng), confidence)


@dataclass(frozen=True)
class Repeated:
    """The repetitions of one measurement and what they say."""

    medians_ms: tuple[float, ...]  # one per repetition, in the order they ran
    median_ms: float
    ci_low_ms: float | None
    ci_high_ms: float | None
    confidence: float
    target_ci_pct: float | None
    stopped: str  # why no more repetitions ran
    verdict: str  # "stable" (within the target, else 5%), "wide" (<= 15%) or "unstable"

    @property
    def ci_pct(self) -> float | None:
        """The interval's width in percent of the median."""
        if self.ci_low_ms is None or self.ci_high_ms is None:
            return None
        return _width_pct((self.ci_low_ms, self.ci_high_ms), self.median_ms)

    @classmethod
    def of(cls, medians: Sequence[float], policy: RepeatPolicy) -> Repeated:
        """The repetitions' statistics under ``policy``."""
        found = median_interval(medians, confidence=policy.confidence)
        middle = float(np.median(medians))
        width = _width_pct(found, middle)
        limit = policy.target_ci_pct if policy.target_ci_pct is not None else STABLE_CI_PCT
        if policy.target_ci_pct is None:
            stopped = f"{len(medians)} repetitions, as asked"
        elif width is not None and width <= policy.target_ci_pct:
            stopped = f"interval within {policy.target_ci_pct:g}% after {len(medians)}"
        else:
            stopped = f"cap of {policy.max_reps} repetitions reached above {policy.target_ci_pct:g}%"
        verdict = ("one repetition: no interval" if width is None else "stable"
                   if width <= limit else "wide" if width <= UNSTABLE_CI_PCT else "unstable")
        return cls(tuple(medians), middle, found and found[0],
                   found and found[1], policy.confidence, policy.target_ci_pct, stopped,
                   verdict)


def interleave(count: int, policy: RepeatPolicy,
               run_once: Callable[[int, int], float | str]) -> dict[int, str]:
    """Repetitions of ``count`` items, round-robin (repetition 1 of every item, then 2
    of those that need more, ...) so drift in the device's state hits all of them
    alike. ``run_once(item, repetition)`` keeps its own result and gives its median ms,
    or a failure message, after which the item runs no more. Returns the failures by
    item."""
    medians: list[list[float]] = [[] for _ in range(count)]
    failed: dict[int, str] = {}
    for rep in range(policy.max_reps):
        todo = [i for i in range(count) if i not in failed and not policy.done(medians[i])]
        for i in todo:
            outcome = run_once(i, rep)
            if isinstance(outcome, str):
                failed[i] = outcome
            else:
                medians[i].append(outcome)
    return failed
