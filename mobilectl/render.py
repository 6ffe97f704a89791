"""Plain data -> rich tables and JSON-ready dicts for the CLI (no heavy imports)."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from mobilectl.core.manifest import ManifestEntry


def millions(value: float | None, digits: int = 2) -> str:
    """Format a count in millions (``None`` -> ``-``)."""
    return "-" if value is None else f"{value / 1e6:.{digits}f}M"


def mebibytes(value: int) -> str:
    return f"{value / 2**20:.2f} MiB"


def models_table(rows: list[dict[str, Any]]) -> Table:
    """The zoo table of ``mobilectl models``."""
    table = Table(title="mobilectl model zoo", title_justify="left")
    for column, justify in (("name", "left"), ("family", "left"), ("variants", "left"),
                            ("input", "right"), ("MACs", "right"), ("params", "right")):
        table.add_column(column, justify=justify)
    for row in rows:
        table.add_row(row["name"], row["family"], row["variants_text"], str(row["input"]),
                      "-" if row["macs_m"] is None else f"{row['macs_m']:g}M", "-" if row["params_m"] is None else f"{row['params_m']:g}M")
    return table


def summary_table(info: dict[str, Any]) -> Table:
    """Totals of ``mobilectl info``."""
    table = Table(title=f"{info['model']} {info['variant'] or '(defaults)'}",
                  title_justify="left", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    paper = info["paper"]
    rows = [
        ("input", "x".join(map(str, info["input"]))),
        ("MACs", millions(info["macs"])),
        ("paper MACs", "-" if paper is None else f"{paper['macs_m']:g}M ({paper['macs_delta_pct']:+.2f}%)"),
        ("element-wise ops", millions(info["elementwise_ops"])),
        ("params (total)", f"{info['params']['total']:,}"),
        ("params (trainable)", f"{info['params']['trainable']:,}"),
        ("memory access float32", mebibytes(info["memory_access_bytes"]["float32"])),
        ("memory access int8", mebibytes(info["memory_access_bytes"]["int8"])),
        ("peak activations float32", mebibytes(info["peak_activation_bytes"]["float32"])),
        ("peak activations int8", mebibytes(info["peak_activation_bytes"]["int8"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def layers_table(layers: list[dict[str, Any]]) -> Table:
    """Per-layer breakdown of ``mobilectl info --per-layer``."""
    table = Table(title="per layer", title_justify="left")
    table.add_column("layer", no_wrap=True)
    for column, justify in (("type", "left"), ("output", "right"),
                            ("MACs", "right"), ("elementwise", "right"), ("params", "right"),
                            ("MAC f32 KiB", "right"), ("MAC i8 KiB", "right")):
        table.add_column(column, justify=justify)
    for row in layers:
        table.add_row(
            row["name"], row["type"], "x".join(map(str, row["output_shape"])),
            f"{row['macs']:,}", f"{row['elementwise']:,}", f"{row['params']:,}",
            f"{row['memory_access_bytes']['float32'] / 1024:,.1f}",
            f"{row['memory_access_bytes']['int8'] / 1024:,.1f}",
        )
    return table


def _metric_text(entry: ManifestEntry) -> str:
    metrics = entry.verification.metrics
    if entry.precision.is_quantized:
        sqnr = metrics["sqnr_db"]
        sqnr_text = "exact" if sqnr is None or math.isinf(sqnr) else f"{sqnr:.1f} dB"
        return (f"cos {metrics['cosine']:.4f}, SQNR {sqnr_text}, "
                f"top-1 {metrics['top1_agreement']:.0%}")
    return f"max abs err {metrics['max_abs_error']:.2e}"


def export_table(entries: list[ManifestEntry], out: str) -> Table:
    """One row per written artifact: size, I/O, verification."""
    table = Table(title=f"artifacts in {out}")
    for column in ("artifact", "format", "precision", "size", "input", "MACs", "verification",
                   "sha256"):
        table.add_column(column, justify="right" if column in ("size", "MACs") else "left")
    for e in entries:
        inp = e.io.inputs[0]
        check = e.verification
        status = ("ok" if check.passed else "BELOW LIMIT") + ("" if check.enforced
                                                              else " (not enforced)")
        table.add_row(e.path, e.format, e.precision, mebibytes(e.bytes),
                      f"{inp.dtype} {'x'.join(str(d) for d in inp.shape)}",
                      millions(e.macs, 1) if e.macs else "-", f"{_metric_text(e)}: {status}",
                      e.sha256[:12])
    return table


def sensitivity_table(rows: list[Any], title: str) -> Table:
    """Layers ranked by the error they add when quantized (worst first)."""
    table = Table(title=title, caption="rmse/step: 0.29 is pure rounding noise")
    for column in ("rank", "layer", "op", "rmse/step", "max err/step", "fused layers"):
        table.add_column(column, justify="right" if "step" in column or column == "rank" else "left")
    for r in rows:
        table.add_row(str(r.rank), r.layer, r.op, f"{r.rmse_steps:.3f}",
                      f"{r.max_abs_steps:.2f}", ", ".join(r.layers))
    return table


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def profile_table(summary: dict[str, Any]) -> Table:
    """Per-model latency next to the FLOPs proxy."""
    table = Table(title=f"latency on {summary['device']}")
    heads = ("model", "format", "precision", "MACs", "size", "median ms", "p5-p95 ms",
             "GMAC/s", "% roofline", "peak MB", "")
    for head in heads:
        table.add_column(head, justify="left" if head in ("model", "format", "precision", "") else "right")
    for m in summary["measurements"]:
        lat = m["latency"]
        frac = m["roofline_fraction"]
        table.add_row(m["model"], m["fmt"], m["precision"], millions(m["macs"], 1),
                      mebibytes(m["size_bytes"]), f"{lat['median_ms']:.3f}",
                      f"{_num(lat['p5_ms'], '.3f')}-{_num(lat['p95_ms'], '.3f')}",
                      _num(m["gmacs"], ".2f"), "-" if frac is None else f"{100 * frac:.1f}%",
                      _num(m["peak_memory_mb"], ".0f"), "noisy" if lat["noisy"] else "")
    rho = [f"{k}: {v['rho']:.2f}" for k, v in summary["spearman_macs_latency"].items()
           if v["rho"] is not None]
    table.caption = "Spearman(MACs, latency) " + ("; ".join(rho) if rho else "n/a (< 3 models)")
    return table


def devices_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="adb devices")
    for head in ("serial", "state", "model", "product", "ABI", "profile"):
        table.add_column(head)
    for r in rows:
        table.add_row(r["serial"], r["state"], r["model"] or "-", r["product"] or "-",
                      r["abi"] or "-", r["profile"] or "-")
    if not rows:
        table.caption = "no devices: connect one over USB, or 'adb connect HOST:PORT'"
    return table


def build_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="mobilectl build")
    for head in ("artifact", "status", "seconds", "files", "error"):
        table.add_column(head, justify="right" if head == "seconds" else "left")
    for r in rows:
        table.add_row(r["artifact"], r["status"], f"{r['seconds']:.1f}", ", ".join(r["files"]),
                      r["error"] or "")
    return table
