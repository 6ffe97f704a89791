"""``mobilectl compare A B``: is A faster than B on this device, and how sure is that?

Both sides are measured in one run, their repetitions interleaved (A B A B ...), so
a drift of the device's clock or temperature hits both alike. The answer is the ratio
of the medians of A's and B's repetitions, a bootstrap interval of that ratio
(:func:`device_profiles.stats.ratio_interval`) and a verdict: *slower* or *faster*
when the whole interval lies beyond ``threshold`` percent of parity, else *no
detectable difference*, stated with the resolution the interval allows (the largest
difference it cannot rule out).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from device_profiles.harness import Artifact, ProfileOptions, check_options, formats_for, measure
from device_profiles.measurement import Measurement
from device_profiles.profile import load_profile
from device_profiles.stats import ratio_interval
from mobilectl.core.errors import UserError
from mobilectl.core.files import write_atomic
from mobilectl.core.types import Precision
from mobilectl.predict import check_precision
from mobilectl.profiling import resolve_targets

Progress = Callable[[str], None]
COMPARE_JSON = "compare.json"


@dataclass(frozen=True)
class Verdict:
    """A against B: the ratio of medians (A / B), its interval and what it says."""

    a: str
    b: str
    ratio: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    threshold_pct: float
    verdict: str  # "slower", "faster" or "no detectable difference"
    resolution_pct: float | None  # the largest difference the interval cannot rule out

    def sentence(self) -> str:
        """One line a person reads."""
        interval = (f"{100 * self.confidence:g}% interval {self.ci_low:.3f}-{self.ci_high:.3f}"
                    if self.ci_low is not None else "no interval (one repetition each)")
        if self.verdict == "no detectable difference":
            tail = (f"; a difference of up to {self.resolution_pct:.1f}% cannot be ruled out"
                    if self.resolution_pct is not None else "")
            return f"{self.a} vs {self.b}: no detectable difference (ratio {self.ratio:.3f}, " \
                   f"{interval}{tail})"
        change = abs(self.ratio - 1) * 100
        return (f"{self.a} is {self.verdict} than {self.b} by {change:.1f}% (ratio "
                f"{self.ratio:.3f}, {interval})")


def verdict_of(a: Measurement, b: Measurement, *, confidence: float,
               threshold_pct: float) -> Verdict:
    """The ratio of A's to B's median repetition, its interval and the verdict."""
    top = a.repeats.medians_ms if a.repeats else (a.latency.median_ms,)
    bottom = b.repeats.medians_ms if b.repeats else (b.latency.median_ms,)
    ratio = a.latency.median_ms / b.latency.median_ms
    found = ratio_interval(top, bottom, confidence=confidence)
    edge = threshold_pct / 100
    if found is not None and found[0] > 1 + edge:
        word = "slower"
    elif found is not None and found[1] < 1 - edge:
        word = "faster"
    else:
        word = "no detectable difference"
    resolution = None if found is None else 100 * max(found[1] - 1, 1 - found[0], 0.0)
    return Verdict(a.artifact, b.artifact, ratio, found and found[0], found and found[1],
                   confidence, threshold_pct, word, resolution)


def pair_up(a: Sequence[Artifact], b: Sequence[Artifact], *, names: tuple[str, str]
            ) -> list[tuple[Artifact, Artifact]]:
    """One artifact a side, or the artifacts of two manifests paired by format and
    precision; a UserError when nothing pairs."""
    if len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])]
    theirs = {(x.fmt, x.precision): x for x in b}
    pairs = [(x, theirs[(x.fmt, x.precision)]) for x in a if (x.fmt, x.precision) in theirs]
    if not pairs:
        kinds = sorted({f"{x.fmt} {x.precision}" for x in a})
        raise UserError(f"compare: {names[0]} ({', '.join(kinds) or 'no artifacts'}) and "
                        f"{names[1]} share no format and precision to compare")
    return pairs


def compare(a: str, b: str, options: ProfileOptions, *, precision: str = "fp32",
            threshold_pct: float = 1.0, progress: Progress) -> dict[str, Any]:
    """Measure A and B interleaved on ``options.device``; the verdicts and the
    measurements, also written to ``compare.json`` under ``options.out``."""
    if not 0 <= threshold_pct < 100:
        raise UserError(f"--threshold {threshold_pct:g} is not allowed: a percentage from 0 "
                        "to 100 (e.g. 1)")
    prof = load_profile(options.device)
    chosen: Precision = check_precision(precision)
    check_options(prof, options)
    found = resolve_targets([a, b], precisions=(chosen,), formats=formats_for(prof),
                            out=options.out / "artifacts", progress=progress)
    pairs = pair_up(found[a], found[b], names=(a, b))
    result = measure([x for pair in pairs for x in pair], prof, options, progress)
    if result.failures:
        raise UserError(f"compare: {result.failures[0]}")
    measured = result.measurements
    verdicts = [verdict_of(measured[2 * i], measured[2 * i + 1],
                           confidence=options.repeat.confidence, threshold_pct=threshold_pct)
                for i in range(len(pairs))]
    summary = {"device": result.device, "profile": prof.name, "a": a, "b": b,
               "verdicts": [{**asdict(v), "sentence": v.sentence()} for v in verdicts],
               "measurements": [m.as_dict() for m in measured], "warnings": result.warnings}
    options.out.mkdir(parents=True, exist_ok=True)
    write_atomic(options.out / COMPARE_JSON,
                 (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode())
    return summary
