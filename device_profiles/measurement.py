"""What a latency run measured, the same for every backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from device_profiles.parse import Delegation
from device_profiles.device_state import DeviceState
from device_profiles.per_layer import LayerError, PerLayer, against_float
from device_profiles.sparse_lint import SparseLint
from device_profiles.stats import Repeated

NOISY_SPREAD = 0.5  # (p95 - p5) / median above this: the run is flagged noisy


@dataclass(frozen=True)
class Latency:
    """Latency statistics in milliseconds."""

    runs: int
    median_ms: float
    p5_ms: float | None
    p95_ms: float | None
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> Latency:
        values = np.asarray(samples_ms, dtype=np.float64)
        p5, median, p95 = np.percentile(values, [5, 50, 95])
        return cls(len(values), float(median), float(p5), float(p95), float(values.mean()),
                   float(values.std()), float(values.min()), float(values.max()))

    @classmethod
    def combined(cls, parts: Sequence[Latency]) -> Latency:
        """Several repetitions as one: the median of their medians, the median of their
        p5 and p95 (one repetition's typical spread), the pooled mean and standard
        deviation (between-repetition drift included), the extremes of all."""
        if len(parts) == 1:
            return parts[0]
        runs = sum(p.runs for p in parts)
        mean = sum(p.mean_ms * p.runs for p in parts) / runs
        var = sum(p.runs * (p.std_ms ** 2 + (p.mean_ms - mean) ** 2) for p in parts) / runs
        p5s = [p.p5_ms for p in parts if p.p5_ms is not None]
        p95s = [p.p95_ms for p in parts if p.p95_ms is not None]
        return cls(runs, float(np.median([p.median_ms for p in parts])),
                   float(np.median(p5s)) if p5s else None,
                   float(np.median(p95s)) if p95s else None, mean, float(np.sqrt(var)),
                   min(p.min_ms for p in parts), max(p.max_ms for p in parts))

    @property
    def spread(self) -> float | None:
        """(p95 - p5) / median, the relative dispersion."""
        if self.p5_ms is None or self.p95_ms is None or self.median_ms <= 0:
            return None
        return (self.p95_ms - self.p5_ms) / self.median_ms

    @property
    def noisy(self) -> bool:
        spread = self.spread
        if spread is None:
            return self.mean_ms > 0 and self.std_ms / self.mean_ms > NOISY_SPREAD / 3
        return spread > NOISY_SPREAD


@dataclass(frozen=True)
class BackendRun:
    """What one backend run of one artifact measured, before it is tied to a device."""

    latency: Latency
    init_ms: float | None
    peak_memory_mb: float | None
    backend: str
    first_inference_ms: float | None = None  # the first run after loading (cold)
    delegation: Delegation | None = None  # what benchmark_model said of the delegate asked for
    tool_version: str | None = None  # the version benchmark_model printed, if any

    @classmethod
    def combined(cls, parts: Sequence[BackendRun]) -> BackendRun:
        """Repetitions of one artifact as one run: latency as :meth:`Latency.combined`,
        load and first-run times their median, peak memory the highest."""
        def median(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return float(np.median(known)) if known else None

        peaks = [p.peak_memory_mb for p in parts if p.peak_memory_mb is not None]
        return cls(Latency.combined([p.latency for p in parts]),
                   median([p.init_ms for p in parts]), max(peaks) if peaks else None,
                   parts[0].backend, median([p.first_inference_ms for p in parts]),
                   parts[-1].delegation, parts[-1].tool_version)


def delegate_flags(requested: str, delegation: Delegation | None) -> tuple[str, ...]:
    """Why a run may not have used the delegate it asked for: the silent CPU fallback
    phones are known for (GPU/NNAPI requested, the CPU used for all or part)."""
    if requested in ("cpu", "xnnpack"):
        return ()
    if delegation is None:
        return (f"{requested} requested, but benchmark_model said nothing of it: the graph "
                "may have run on the CPU",)
    why = f" ({delegation.errors[-1]})" if delegation.errors else ""
    share = (f"{delegation.nodes} of {delegation.total} nodes" if delegation.total is not None
             else f"{delegation.nodes} nodes" + (f", {delegation.cpu_nodes} left to the CPU"
                                                 if delegation.cpu_nodes else ""))
    return {"full": (),
            "none": (f"{requested} requested, but it ran none of the graph: the CPU ran it"
                     f"{why}",),
            "partial": (f"{requested} ran only part of the graph ({share}); the rest ran on "
                        "the CPU",)}.get(delegation.placement,
                                         (f"{requested} requested: its share of the graph "
                                          "was not reported",))


@dataclass(frozen=True)
class Measurement:
    """One artifact measured on one device."""

    artifact: str
    model: str
    fmt: str
    precision: str
    macs: int | None
    params: int | None
    size_bytes: int
    device: str
    backend: str
    threads: int
    delegate: str
    latency: Latency
    init_ms: float | None = None
    peak_memory_mb: float | None = None
    peak_gmacs: float | None = None  # the profile's roofline for this precision
    per_layer: PerLayer | None = None  # with --per-layer
    per_layer_error: str | None = None  # why there is no per-layer table, when asked
    first_inference_ms: float | None = None  # the first run after loading (cold)
    repeats: Repeated | None = None  # the repetitions and their interval
    state_before: DeviceState | None = None  # before the first repetition
    state_after: DeviceState | None = None  # after the last
    state_flags: tuple[str, ...] = ()  # why the runs may not compare (throttled, hotter)
    sparse_lint: SparseLint | None = None  # TFLite with sparse weights: would XNNPACK use them
    delegation: Delegation | None = None  # the requested delegate's placement (benchmark_model)
    delegate_flags: tuple[str, ...] = ()  # requested but not (fully) used
    tool_version: str | None = None  # benchmark_model's version, when it prints one

    @property
    def gmacs(self) -> float | None:
        """Achieved GMAC/s at the median latency."""
        if not self.macs or self.latency.median_ms <= 0:
            return None
        return self.macs / (self.latency.median_ms * 1e-3) / 1e9

    @property
    def roofline_fraction(self) -> float | None:
        achieved = self.gmacs
        return None if achieved is None or not self.peak_gmacs else achieved / self.peak_gmacs

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"]["spread"] = self.latency.spread
        data["latency"]["noisy"] = self.latency.noisy
        data["gmacs"] = self.gmacs
        data["roofline_fraction"] = self.roofline_fraction
        data["per_layer"] = self.per_layer.as_dict() if self.per_layer else None
        data["sparse_lint"] = self.sparse_lint.as_dict() if self.sparse_lint else None
        data["delegation"] = self.delegation.as_dict() if self.delegation else None
        if self.repeats:
            data["repeats"]["ci_pct"] = self.repeats.ci_pct
        return data


def pairs_of(measurements: Sequence[Measurement]) -> dict[str, tuple[Measurement, Measurement]]:
    """(int8, float) measurements of the same model, format and device, both per layer,
    keyed by the int8 artifact."""
    floats = {(m.model, m.fmt, m.device): m for m in measurements
              if m.per_layer and m.precision == "fp32"}
    return {m.artifact: (m, floats[(m.model, m.fmt, m.device)]) for m in measurements
            if m.per_layer and m.precision == "int8" and (m.model, m.fmt, m.device) in floats}


def with_float_twins(measurements: Sequence[Measurement], *,
                     errors: Mapping[str, Sequence[LayerError]] | None = None
                     ) -> list[Measurement]:
    """Each int8 per-layer table beside its float twin's (:func:`pairs_of`): the float
    time of every row's layers and, from ``errors`` (by model name, TFLite only: the
    quantization debugger's rows), the row's int8 error."""
    pairs = pairs_of(measurements)
    out = []
    for m in measurements:
        if m.artifact in pairs and m.per_layer:
            twin = pairs[m.artifact][1].per_layer
            found = (errors or {}).get(m.model, ()) if m.fmt == "tflite" else ()
            m = dataclasses.replace(m, per_layer=against_float(m.per_layer, twin, errors=found))
        out.append(m)
    return out
