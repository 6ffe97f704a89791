"""The profile report: per-model table, MACs-vs-latency rank correlation and plot.

FLOPs alone mispredict speed (Ma et al. 2018, ShuffleNet V2, Sec. 1-2): the report
puts measured latency next to the MACs proxy, with the Spearman rank correlation
between them and a labelled scatter plot, on the user's own device.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from device_profiles.html_report import write_html, write_node_data
from device_profiles.measurement import Measurement, pairs_of, with_float_twins
from device_profiles.parse import NOT_REPORTED
from device_profiles.per_layer import LayerError, LayerPair, PerLayer, compare
from device_profiles.stats import Repeated
from mobilectl.core.files import write_atomic

PLOT_NAME = "latency_vs_macs.png"


def groups(measurements: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    """Measurements by format and precision (latencies compare only within one)."""
    out: dict[str, list[Measurement]] = {}
    for m in measurements:
        out.setdefault(f"{m.fmt} {m.precision}", []).append(m)
    return out


def spearman(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """Spearman rank correlation of MACs and median latency per group (>= 3 models)."""
    result = {}
    for name, items in groups(measurements).items():
        items = [m for m in items if m.macs]
        if len(items) < 3:
            result[name] = {"models": len(items), "rho": None, "p_value": None}
            continue
        rho, p = spearmanr([m.macs for m in items], [m.latency.median_ms for m in items])
        result[name] = {"models": len(items), "rho": float(rho), "p_value": float(p)}
    return result


def plot(measurements: Sequence[Measurement], path: Path, *, device: str) -> Path | None:
    """Scatter of MACs (x) against median latency (y), p5-p95 bars, one colour per
    group, every point labelled. None when there is nothing with MACs to plot."""
    import matplotlib  # heavy: only when there is something to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [m for m in measurements if m.macs]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for name, items in groups(points).items():
        xs = [m.macs / 1e6 for m in items]
        ys = [m.latency.median_ms for m in items]
        lo = [m.latency.median_ms - (m.latency.p5_ms or m.latency.median_ms) for m in items]
        hi = [(m.latency.p95_ms or m.latency.median_ms) - m.latency.median_ms for m in items]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=name)
        for m, x, y in zip(items, xs, ys):
            ax.annotate(m.model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("median latency (ms), p5-p95 bars")
    ax.set_title(f"MACs vs measured latency on {device}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def state_markdown(measurements: Sequence[Measurement]) -> list[str]:
    """The device's state around each measurement, and what changed beyond limits."""
    rows = [m for m in measurements if m.state_before and m.state_after]
    if not rows:
        return []
    lines = ["", "Device state (before -> after the repetitions):", "",
             "| model | device | governor | hottest C | battery | load | flags |",
             "|---|---|---|---|---|---|---|"]
    for m in rows:
        before, after = m.state_before, m.state_after
        battery = ("-" if before.battery_level is None else f"{before.battery_level}%"
                   + (" charging" if before.charging else ""))
        lines.append(
            f"| {m.artifact} | {m.device} | {', '.join(before.governors) or '-'} "
            f"| {_fmt(before.hottest_c, '.1f')} -> {_fmt(after.hottest_c, '.1f')} "
            f"| {battery} | {_fmt(before.load_avg, '.2f')} | {', '.join(m.state_flags) or '-'} |")
    return lines


def delegation_markdown(measurements: Sequence[Measurement]) -> list[str]:
    """Where benchmark_model placed the graph, for runs that asked for a delegate, and
    what it did not report (never shown as 0)."""
    rows = [m for m in measurements if m.delegate not in ("cpu", "xnnpack")
            and m.backend.startswith("benchmark_model")]
    lines = []
    if rows:
        lines += ["", "Delegate placement (as benchmark_model reported it):", "",
                  "| model | device | delegate | placement | nodes | partitions | flag |",
                  "|---|---|---|---|---|---|---|"]
        for m in rows:
            d = m.delegation
            nodes = "-" if d is None or d.nodes is None else (
                f"{d.nodes}" + (f" of {d.total}" if d.total is not None else ""))
            lines.append(f"| {m.artifact} | {m.device} | {m.delegate} "
                         f"| {d.placement if d else 'not reported'} | {nodes} "
                         f"| {_fmt(d and d.partitions, 'd')} | {'; '.join(m.delegate_flags) or '-'} |")
    unreported = [m.artifact for m in measurements if m.backend.startswith("benchmark_model")
                  and m.peak_memory_mb is None]
    if unreported:
        lines += ["", f"Peak memory of {', '.join(unreported)}: {NOT_REPORTED}."]
    versions = sorted({m.tool_version or NOT_REPORTED for m in measurements
                       if m.backend.startswith("benchmark_model")})
    if versions:
        lines += ["", f"benchmark_model version: {', '.join(versions)}."]
    return lines


def _interval(reps: Repeated | None) -> str:
    if reps is None or reps.ci_low_ms is None or reps.ci_high_ms is None:
        return "-"
    return f"{reps.ci_low_ms:.3f}-{reps.ci_high_ms:.3f}"


def per_layer_markdown(artifact: str, table: PerLayer) -> list[str]:
    """Every row of one artifact's per-layer table, in run order (with the float time
    and int8 error of each row when the table has a float twin)."""
    ratio = table.parts_over_whole
    twin = table.has_float_twin
    heads = ["#", "layers", "op", "ms", "%", "MMACs", "MB moved", "GMAC/s", "% roofline",
             "kernel", *(["float ms", "int8 / float", "int8 error (steps)"] if twin else []),
             "why"]
    lines = [f"## Per layer: {artifact}", "",
             f"{table.method}. The ops sum to {table.sum_ms:.3f} ms"
             + (f", {ratio:.2f}x the whole model's {table.whole_ms:.3f} ms." if ratio else "."),
             "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for n, r in enumerate(table.rows):
        cells = [str(n), ", ".join(r.layers) or f"({r.name})", r.kind, _fmt(r.ms, ".3f"),
                 _fmt(r.share and 100 * r.share, ".1f"), f"{r.macs / 1e6:.2f}",
                 f"{r.memory_bytes / 1e6:.2f}", _fmt(r.gmacs, ".1f"),
                 _fmt(r.roofline_fraction and 100 * r.roofline_fraction, ".1f"),
                 r.kernel or "-", *([_fmt(r.float_ms, ".3f"), _fmt(r.versus_float, ".2f"),
                                     _fmt(r.rmse_steps, ".2f")] if twin else []),
                 ", ".join(r.flags)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(measurements: Sequence[Measurement], correlation: dict[str, Any],
             versus_float: dict[str, Any], *,
             device: str, plot_name: str | None, failures: Sequence[str]) -> str:
    """A Markdown report (fit for a CI job summary)."""
    confidence = next((m.repeats.confidence for m in measurements if m.repeats), 0.95)
    lines = [f"# Latency on {device}", "",
             f"| model | format | precision | MACs | params | size | median ms "
             f"| {100 * confidence:g}% CI ms "
             "| reps | verdict | p5-p95 ms | "
             "GMAC/s | % roofline | load ms | first run ms | peak MB | noisy |",
             "|" + "---|" * 17]
    for m in measurements:
        lat, reps = m.latency, m.repeats
        lines.append(
            f"| {m.model} | {m.fmt} | {m.precision} | {_fmt(m.macs and m.macs / 1e6, '.1f', 'M')} "
            f"| {_fmt(m.params and m.params / 1e6, '.2f', 'M')} | {m.size_bytes / 2**20:.2f} MiB "
            f"| {lat.median_ms:.3f} | {_interval(reps)} | {len(reps.medians_ms) if reps else '-'} "
            f"| {reps.verdict if reps else '-'} "
            f"| {_fmt(lat.p5_ms, '.3f')}-{_fmt(lat.p95_ms, '.3f')} "
            f"| {_fmt(m.gmacs, '.2f')} | {_fmt(m.roofline_fraction and 100 * m.roofline_fraction, '.1f', '%')} "
            f"| {_fmt(m.init_ms, '.1f')} | {_fmt(m.first_inference_ms, '.2f')} "
            f"| {_fmt(m.peak_memory_mb, '.0f')} | {'yes' if lat.noisy else ''} |")
    lines += ["", "Spearman rank correlation of MACs and median latency:", ""]
    for name, c in correlation.items():
        rho = "n/a (fewer than 3 models)" if c["rho"] is None else f"{c['rho']:.3f} (p={c['p_value']:.3g})"
        lines.append(f"- {name}: {rho} over {c['models']} models")
    if plot_name:
        lines += ["", f"![MACs vs latency]({plot_name})"]
    lines += state_markdown(measurements)
    lines += delegation_markdown(measurements)
    for m in measurements:
        if m.per_layer:
            lines += ["", *per_layer_markdown(m.artifact, m.per_layer)]
    for artifact, versus in versus_float.items():
        lines += ["", f"## int8 against float: {artifact} vs {versus['float']}", "",
                  f"{versus['slower_in_int8']} of {len(versus['layers'])} layer sets are "
                  "slower in int8; the ten with the most extra time:", "",
                  "| layers | int8 ops | int8 ms | float ms | int8 / float | why |",
                  "|---|---|---|---|---|---|"]
        for p in versus["layers"][:10]:
            lines.append(f"| {', '.join(p['layers'])} | {' '.join(p['kinds'])} "
                         f"| {p['ms']:.3f} | {p['reference_ms']:.3f} "
                         f"| {_fmt(p['ratio'], '.2f')} | {', '.join(p['flags']) or '-'} |")
    if failures:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


LayerPairs = dict[str, tuple[str, tuple[LayerPair, ...]]]


def layer_pairs(measurements: Sequence[Measurement]) -> LayerPairs:
    """For each int8 artifact profiled per layer beside its float twin (same model,
    format, device): the twin's name and every layer set both time, the layers with
    the most extra int8 time first."""
    return {artifact: (fp32.artifact, compare(int8.per_layer, fp32.per_layer))
            for artifact, (int8, fp32) in pairs_of(measurements).items()
            if int8.per_layer and fp32.per_layer}


def int8_vs_float(paired: LayerPairs) -> dict[str, Any]:
    """:func:`layer_pairs` as JSON: int8 ms against float ms per layer set."""
    return {artifact: {"float": twin, "slower_in_int8": sum(p.ms > p.reference_ms for p in pairs),
                       "layers": [{**dataclasses.asdict(p), "ratio": p.ratio} for p in pairs]}
            for artifact, (twin, pairs) in paired.items()}


def write_report(out: Path, measurements: Sequence[Measurement], *, device: str,
                 failures: Sequence[str], extra: dict[str, Any],
                 errors: Mapping[str, Sequence[LayerError]] | None = None) -> dict[str, Any]:
    """Write ``profile.json``, ``profile.md``, ``profile.html`` and the plot under
    ``out``; return the JSON-ready summary. Int8 per-layer tables are joined with their
    float twins and with ``errors`` (int8 error per layer, by model name) first."""
    out.mkdir(parents=True, exist_ok=True)
    measurements = with_float_twins(measurements, errors=errors)
    paired = layer_pairs(measurements)
    correlation = spearman(measurements)
    plotted = plot(measurements, out / PLOT_NAME, device=device)
    summary = {"device": device, **extra, "measurements": [m.as_dict() for m in measurements],
               "spearman_macs_latency": correlation, "failures": list(failures),
               "plot": str(plotted) if plotted else None,
               "int8_vs_float": int8_vs_float(paired)}
    write_atomic(out / "profile.json",
                 (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n").encode())
    text = markdown(measurements, correlation, summary["int8_vs_float"], device=device,
                    plot_name=PLOT_NAME if plotted else None, failures=failures)
    write_atomic(out / "profile.md", text.encode())
    summary["report"] = str(out / "profile.md")
    page = write_html(out, measurements, device=device, paired=paired)
    summary["html"] = str(page) if page else None
    summary["node_data"] = [str(path) for m in measurements if m.per_layer
                            for path in write_node_data(out, m.artifact, m.per_layer,
                                                        device=m.device)]
    return summary
