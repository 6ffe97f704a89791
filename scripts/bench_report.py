"""Plots and the Markdown of scripts/bench.py (kept apart so the runner stays short)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def correlation_and_plots(rows: list[dict[str, Any]], roofline: dict[str, float],
                          plots: Path) -> dict[str, Any]:
    """Spearman(MACs, latency) per format/precision at 2 threads (zoo models only), the
    MACs-vs-latency scatter and the roofline plot."""
    from scipy.stats import spearmanr

    zoo = [r for r in rows if r["origin"] == "registry" and r["threads"] == 2 and r["macs"]]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in zoo:
        groups.setdefault(f"{r['format']} {r['precision']}", []).append(r)
    spearman = {}
    for name, items in groups.items():
        if len(items) >= 3:
            rho, p = spearmanr([r["macs"] for r in items],
                               [r["latency_ms"]["median"] for r in items])
            spearman[name] = {"rho": float(rho), "p_value": float(p), "models": len(items)}
        else:
            spearman[name] = {"rho": None, "p_value": None, "models": len(items)}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for name, items in sorted(groups.items()):
        xs = [r["macs"] / 1e6 for r in items]
        ys = [r["latency_ms"]["median"] for r in items]
        lo = [r["latency_ms"]["median"] - r["latency_ms"]["ci_low"] for r in items]
        hi = [r["latency_ms"]["ci_high"] - r["latency_ms"]["median"] for r in items]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=2, label=name)
        if name == "tflite fp32":
            for r, x, y in zip(items, xs, ys):
                ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(3, 3),
                            fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="MACs (millions)", ylabel="median latency (ms)",
           title="MACs vs latency, this machine, 2 threads (bars: 95% interval)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots / "latency_vs_macs.png", metadata={"Software": None})
    plt.close(fig)
    _roofline_plot(zoo, roofline, plots / "roofline.png")
    return {"spearman": spearman, "plots": ["latency_vs_macs.png", "roofline.png"]}


def _roofline_plot(rows: list[dict[str, Any]], roofline: dict[str, float], path: Path) -> None:
    plt = _plt()
    peak, bandwidth = roofline["peak_gmacs_fp32"], roofline["bandwidth_gbs"]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    xs = [0.1 * 1.2 ** i for i in range(60)]
    ax.plot(xs, [min(peak, bandwidth * x) for x in xs], "k-", label="roofline (fp32)")
    for fmt in ("tflite", "onnx"):
        items = [r for r in rows if r["format"] == fmt and r["precision"] == "fp32"
                 and r["memory_access_bytes_fp32"]]
        ax.scatter([r["macs"] / r["memory_access_bytes_fp32"] for r in items],
                   [r["gmacs"] for r in items], label=f"{fmt} fp32")
        for r in items if fmt == "tflite" else []:
            ax.annotate(r["model"], (r["macs"] / r["memory_access_bytes_fp32"], r["gmacs"]),
                        textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (MACs per byte of fp32 traffic)",
           ylabel="achieved GMAC/s", title=f"Roofline: peak {peak:.0f} GMAC/s, {bandwidth:.1f} GB/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _ms(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} [{stats['ci_low']:.2f}-{stats['ci_high']:.2f}]"


def markdown(results: dict[str, Any], plots: Path) -> str:
    m = results["machine"]
    roof = m["roofline"]
    s = results["settings"]
    lines = [
        "# Benchmarks", "",
        f"`python scripts/bench.py{' --quick' if s['resolution'] else ''}` on {m['platform']}, "
        f"{m['cpus']} CPUs, Python {m['python']}; wall time {results['wall_time_s'] / 60:.1f} min.",
        f"Latency: median of {s['repeats']} interleaved repetitions, each the median of "
        f"{s['runs']} runs after {s['warmup']} warm-up runs; in brackets the 95% bootstrap "
        "interval of the median (seeded; `device_profiles.stats`, as `mobilectl profile`), "
        "and for ratios the interval of the ratio of medians.",
        f"This machine: peak {roof['peak_gmacs_fp32']:.1f} GMAC/s (float32 matmul), memory "
        f"bandwidth {roof['bandwidth_gbs']:.1f} GB/s (copy), measured before and after.", "",
        "## 1. Host latency (ms) and achieved GMAC/s", "",
        "| model | MACs | format | precision | 1 thread | 2 threads | GMAC/s (2t) | % peak |",
        "|---|---|---|---|---|---|---|---|"]
    by_key = {(r["artifact"], r["threads"]): r for r in results["latency"]}
    for r in results["latency"]:
        if r["threads"] != 2 or r["origin"] != "registry":
            continue
        one = by_key[(r["artifact"], 1)]
        pct = "-" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.0f}%"
        lines.append(f"| {r['model']} | {r['macs'] / 1e6:.0f}M | {r['format']} | {r['precision']} "
                     f"| {_ms(one['latency_ms'])} | {_ms(r['latency_ms'])} "
                     f"| {r['gmacs']:.1f} | {pct} |")
    lines += ["", f"![roofline]({plots}/roofline.png)", "",
              "## 2. Peer parity with keras.applications (TFLite, ours / twin)", "",
              "| model | twin | precision | threads | ours ms | twin ms | latency ratio | size ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for p in results["peers"]:
        lines.append(f"| {p['model']} | {p['twin']} | {p['precision']} | {p['threads']} "
                     f"| {p['ours_ms']:.2f} | {p['twin_ms']:.2f} | {p['latency_ratio']:.2f} "
                     f"[{p['ratio_ci_low']:.2f}-{p['ratio_ci_high']:.2f}] "
                     f"| {p['size_ratio']:.3f} |")
    e = results["export"]
    lines += ["", "## 3. Export cost", "",
              f"First build of everything above: {e['first_build_s']:.0f} s, peak RSS "
              f"{e['first_build_peak_mb']:.0f} MB. Cached rebuild (nothing changed): "
              f"{e['cached_rebuild_s']:.1f} s ({e['cached_rebuild_s'] / e['first_build_s']:.1%}), "
              f"peak RSS {e['cached_rebuild_peak_mb']:.0f} MB.", "",
              "| job | status | seconds (both formats) |", "|---|---|---|"]
    for job in e["jobs"]:
        lines.append(f"| {job['artifact']} | {job['status']} | {job['seconds']:.1f} |")
    failed = [job for job in e["jobs"] if job["status"] == "failed"]
    if failed:
        lines += ["", "Failed jobs (not in the latency tables):", ""]
        lines += [f"- {job['artifact']}: {(job['error'] or '')[:240]}" for job in failed]
    lines += ["", "## 4. Accuracy kept by int8 (digits, 32x32, test split)", "",
              "| model | float top-1 | TFLite int8 | ONNX int8 | drop (TFLite / ONNX) |",
              "|---|---|---|---|---|"]
    for a in results["accuracy"]:
        t, o = a.get("tflite_int8_top1"), a.get("onnx_int8_top1")
        lines.append(f"| {a['model']} {a['knobs']} | {a['float_top1']:.3f} | {t:.3f} | {o:.3f} "
                     f"| {a['float_top1'] - t:+.3f} / {a['float_top1'] - o:+.3f} |")
    lines += ["", "## 5. FLOPs against latency", "",
              "Spearman rank correlation of MACs and median latency (2 threads, zoo models):", ""]
    for name, c in sorted(results["spearman"].items()):
        rho = "n/a" if c["rho"] is None else f"{c['rho']:.3f} (p={c['p_value']:.2g})"
        lines.append(f"- {name}: {rho} over {c['models']} models")
    lines += ["", f"![MACs vs latency]({plots}/latency_vs_macs.png)", ""]
    return "\n".join(lines)
