"""Plain data -> rich tables for the CLI (no heavy imports).

Every table fits the terminal: a column a user has to type from (a model, layer,
artifact or serial name) never wraps or truncates; when the table is too wide, the
columns that matter least are dropped first (``--json`` always has everything), and
long free text (variants, verification, errors) wraps inside its column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from device_profiles.layer_map import layer_text
from mobilectl.core.manifest import ManifestEntry

WRAP_MIN = 18  # the narrowest a wrapping column gets


@dataclass(frozen=True)
class Column:
    """A table column: ``drop`` 0 never drops; higher numbers drop first."""

    head: str
    right: bool = False
    drop: int = 0
    wrap: bool = False


def fitted(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
           width: int, caption: str | None = None) -> Table:
    """A table of ``rows`` within ``width`` characters: drop columns by priority while
    it is too wide; names keep their full width."""
    keep = list(range(len(columns)))

    def needed(indexes: list[int]) -> int:
        widths = [max([len(columns[i].head), *(len(r[i]) for r in rows)]) for i in indexes]
        return sum(min(w, WRAP_MIN) if columns[i].wrap else w
                   for i, w in zip(indexes, widths)) + 3 * len(indexes) + 1

    for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop):
        if needed(keep) <= width:
            break
        keep.remove(i)
    table = Table(title=title, title_justify="left", caption=caption)
    for i in keep:
        column = columns[i]
        table.add_column(column.head, justify="right" if column.right else "left",
                         no_wrap=not column.wrap, overflow="fold",
                         min_width=None if column.wrap else needed([i]) - 4)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def millions(value: float | None, digits: int = 2) -> str:
    """Format a count in millions (``None`` -> ``-``)."""
    return "-" if value is None else f"{value / 1e6:.{digits}f}M"


def mebibytes(value: int) -> str:
    return f"{value / 2**20:.2f} MiB"


def _paper(value: float | None) -> str:
    return "-" if value is None else f"{value:g}M"


def models_table(rows: list[dict[str, Any]], *, width: int) -> Table:
    """The zoo table of ``mobilectl models``; the MACs and params are the papers'."""
    predicted = bool(rows) and "predicted_ms" in rows[0]
    columns = (Column("name"), Column("family", drop=3), Column("input", right=True, drop=2),
               Column("paper MACs", right=True, drop=1), Column("paper params", right=True, drop=1),
               *((Column("predicted ms", right=True),) if predicted else ()),
               Column("knobs", wrap=True, drop=4))
    body = [[r["name"], r["family"], str(r["input"]), _paper(r["macs_m"]), _paper(r["params_m"]),
             *((_ms(r["predicted_ms"], bound=r["predicted_lower_bound"]),) if predicted else ()),
             r["variants_text"]] for r in rows]
    caption = "paper MACs/params: the paper's figures at the default variant"
    if predicted:
        caption += (f"; predicted ms: {rows[0]['predicted_precision']} on "
                    f"{rows[0]['predicted_device']}, from its kernel table, fastest first")
    return fitted("mobilectl model zoo", columns, body, width=width, caption=caption)


def summary_table(info: dict[str, Any]) -> Table:
    """Totals of ``mobilectl info``."""
    title = (f"{info['model']} ({info['source']} file)" if "file" in info
             else f"{info['model']} {info['variant'] or '(defaults)'}")
    table = Table(title=title, title_justify="left", show_header=False,
                  caption=_unknown_caption(info["unknown_ops"]))
    table.add_column("quantity")
    table.add_column("value", justify="right")
    paper = info["paper"]
    bound = " (at least)" if info["macs_lower_bound"] else ""
    rows = [
        ("input", "x".join(map(str, info["input"]))),
        ("MACs" + bound, millions(info["macs"])),
        *([] if "file" in info else [
            ("paper MACs", "-" if paper is None
             else f"{paper['macs_m']:g}M ({paper['macs_delta_pct']:+.2f}%)")]),
        ("element-wise ops" + bound, millions(info["elementwise_ops"])),
        *([("params (stored constants)", f"{info['params']['total']:,}")] if "file" in info
          and info["source"] != "keras" else [
            ("params (total)", f"{info['params']['total']:,}"),
            ("params (trainable)", f"{info['params']['trainable']:,}")]),
        ("memory access float32", mebibytes(info["memory_access_bytes"]["float32"])),
        ("memory access int8", mebibytes(info["memory_access_bytes"]["int8"])),
        ("peak activations float32", mebibytes(info["peak_activation_bytes"]["float32"])),
        ("peak activations int8", mebibytes(info["peak_activation_bytes"]["int8"])),
        *((f"weights {dtype}", _bytes(size))
          for dtype, size in sorted(info.get("weight_bytes", {}).items())),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _bytes(size: int) -> str:
    return mebibytes(size) if size >= 2**20 else f"{size / 1024:.1f} KiB"


def _unknown_caption(unknown: dict[str, int]) -> str | None:
    if not unknown:
        return None
    ops = ", ".join(f"{kind} x{count}" for kind, count in sorted(unknown.items()))
    return f"lower bounds: no cost rule for {ops}"


def layers_table(layers: list[dict[str, Any]], *, width: int) -> Table:
    """Per-layer breakdown of ``mobilectl info --per-layer``."""
    columns = (Column("layer"), Column("type", drop=3), Column("output", right=True, drop=2),
               Column("MACs", right=True), Column("elementwise", right=True, drop=4),
               Column("params", right=True, drop=1),
               Column("mem access (f32) KiB", right=True, drop=5),
               Column("mem access (i8) KiB", right=True, drop=6))
    body = [[r["name"], r["type"], "x".join(map(str, r["output_shape"])), f"{r['macs']:,}",
             f"{r['elementwise']:,}", f"{r['params']:,}",
             f"{r['memory_access_bytes']['float32'] / 1024:,.1f}",
             f"{r['memory_access_bytes']['int8'] / 1024:,.1f}"] for r in layers]
    return fitted("per layer", columns, body, width=width,
                  caption="mem access: input + output feature maps + weights (ShuffleNet V2's MAC)")


def _metric_text(entry: ManifestEntry) -> str:
    metrics = entry.verification.metrics
    if metrics.get("constant_output"):
        return "constant output (the same for every input)"
    if entry.precision.is_quantized:
        sqnr = metrics["sqnr_db"]
        sqnr_text = "exact" if sqnr is None or math.isinf(sqnr) else f"{sqnr:.1f} dB"
        return (f"cos {metrics['cosine']:.4f}, SQNR {sqnr_text}, "
                f"top-1 {metrics['top1_agreement']:.0%}")
    return f"max abs err {metrics['max_abs_error']:.2e}"


def export_table(entries: list[ManifestEntry], out: str, *, width: int) -> Table:
    """One row per written artifact: size, I/O, verification."""
    columns = (Column("artifact"), Column("format", drop=3), Column("precision", drop=2),
               Column("size", right=True), Column("input", drop=4),
               Column("MACs", right=True, drop=5), Column("verification", wrap=True),
               Column("sha256", drop=6))
    body = []
    for e in entries:
        inp, check = e.io.inputs[0], e.verification
        status = ("ok" if check.passed else "BELOW LIMIT") + ("" if check.enforced
                                                              else " (not enforced)")
        body.append([e.path, str(e.format), str(e.precision), mebibytes(e.bytes),
                     f"{inp.dtype} {'x'.join(str(d) for d in inp.shape)}",
                     millions(e.macs, 1) if e.macs else "-", f"{_metric_text(e)}: {status}",
                     e.sha256[:12]])
    return fitted(f"artifacts in {out}", columns, body, width=width)


def sensitivity_table(rows: list[Any], title: str, *, width: int) -> Table:
    """Layers ranked by the error they add when quantized (worst first)."""
    columns = (Column("rank", right=True), Column("layer"), Column("op", drop=2),
               Column("rmse/step", right=True), Column("max err/step", right=True, drop=1),
               Column("fused layers", wrap=True, drop=3))
    body = [[str(r.rank), r.layer, r.op, f"{r.rmse_steps:.3f}", f"{r.max_abs_steps:.2f}",
             ", ".join(r.layers)] for r in rows]
    return fitted(title, columns, body, width=width,
                  caption="rmse/step: 0.29 is pure rounding noise")


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _delegate_cell(m: dict[str, Any]) -> str:
    """``gpu full``, ``gpu partial!``, ``gpu none!`` (``!``: a flagged fallback)."""
    if m.get("delegate") in (None, "cpu", "xnnpack"):
        return "-"
    placement = (m.get("delegation") or {}).get("placement", "not reported")
    return f"{m['delegate']} {placement}" + ("!" if m.get("delegate_flags") else "")


def profile_table(summary: dict[str, Any], *, width: int) -> Table:
    """Per-model latency next to the FLOPs proxy: the median of the repetitions with
    its confidence interval and verdict."""
    columns = (Column("model"), Column("format", drop=3), Column("prec", drop=2),
               Column("MACs", right=True, drop=6), Column("size", right=True, drop=13),
               Column("median ms", right=True), Column("CI ms", right=True, drop=1),
               Column("reps", right=True, drop=5), Column("p5-p95 ms", right=True, drop=7),
               Column("GMAC/s", right=True, drop=8), Column("% roofline", right=True, drop=12),
               Column("load ms", right=True, drop=10), Column("1st ms", right=True, drop=11),
               Column("peak MB", right=True, drop=9), Column("verdict", drop=4),
               Column("delegate", drop=14), Column("predicted ms", right=True, drop=5))
    body = []
    predicted = summary.get("predictions") or {}
    for m in summary["measurements"]:
        lat, frac, reps = m["latency"], m["roofline_fraction"], m.get("repeats") or {}
        ci = (f"{reps['ci_low_ms']:.3f}-{reps['ci_high_ms']:.3f}"
              if reps.get("ci_low_ms") is not None else "-")
        body.append([m["model"], m["fmt"], m["precision"], millions(m["macs"], 1),
                     mebibytes(m["size_bytes"]), f"{lat['median_ms']:.3f}", ci,
                     str(len(reps.get("medians_ms", ()))) or "-",
                     f"{_num(lat['p5_ms'], '.3f')}-{_num(lat['p95_ms'], '.3f')}",
                     _num(m["gmacs"], ".2f"), "-" if frac is None else f"{100 * frac:.1f}%",
                     _num(m["init_ms"], ".1f"), _num(m["first_inference_ms"], ".2f"),
                     _num(m["peak_memory_mb"], ".0f"), _verdict(reps, noisy=lat["noisy"]),
                     _delegate_cell(m), _predicted_cell(predicted.get(m["artifact"]))])
    rho = [f"{k}: {v['rho']:.2f}" for k, v in summary.get("spearman_macs_latency", {}).items()
           if v["rho"] is not None]
    caption = (("Spearman(MACs, latency) " + ("; ".join(rho) if rho else "n/a (< 3 models)")
                if "spearman_macs_latency" in summary else "")
               + _repeats_caption([m["repeats"] for m in summary["measurements"]
                                   if m.get("repeats")])).removeprefix("; ")
    if any(m["peak_memory_mb"] is None and str(m.get("backend", "")).startswith("benchmark_model")
           for m in summary["measurements"]):
        caption += "; peak MB -: not reported by this benchmark_model"
    return fitted(f"latency on {summary['device']}", columns, body, width=width, caption=caption)


def _predicted_cell(found: dict[str, Any] | None) -> str:
    """The kernel table's prediction and its error against the median."""
    if not found:
        return "-"
    bound = ">=" if found["lower_bound"] else ""
    return f"{bound}{found['predicted_ms']:.3f} ({found['error_pct']:+.0f}%)"


def _repeats_caption(repeats: list[dict[str, Any]]) -> str:
    """What the CI column is and, with a target, how many reached it."""
    if not repeats:
        return ""
    text = (f"; CI: {100 * repeats[0]['confidence']:g}% bootstrap interval of the median of "
            f"{'/'.join(sorted({str(len(r['medians_ms'])) for r in repeats}, key=int))} "
            "repetitions")
    target = repeats[0]["target_ci_pct"]
    if target is not None:
        reached = sum(r["ci_pct"] is not None and r["ci_pct"] <= target for r in repeats)
        text += f"; within the {target:g}% target: {reached} of {len(repeats)}"
    return text


def _verdict(reps: dict[str, Any], *, noisy: bool) -> str:
    """``stable``/``unstable`` (the interval), ``+noisy`` when one repetition's runs
    spread wide."""
    base = reps.get("verdict", "")
    base = "1 rep" if base.startswith("one repetition") else base
    return (base + " noisy" if noisy else base) if reps else ("noisy" if noisy else "")


def devices_table(rows: list[dict[str, Any]], *, width: int) -> Table:
    columns = (Column("serial"), Column("state"), Column("model", drop=2),
               Column("product", drop=3), Column("ABI", drop=1), Column("profile"))
    body = [[r["serial"], r["state"], r["model"] or "-", r["product"] or "-", r["abi"] or "-",
             r["profile"] or "-"] for r in rows]
    caption = None if rows else "no devices: connect one over USB, or 'adb connect HOST:PORT'"
    return fitted("adb devices", columns, body, width=width, caption=caption)


def build_table(rows: list[dict[str, Any]], *, width: int) -> Table:
    columns = (Column("artifact"), Column("status"), Column("seconds", right=True, drop=1),
               Column("files", wrap=True, drop=2), Column("error", wrap=True))
    body = [[r["artifact"], r["status"], f"{r['seconds']:.1f}", ", ".join(r["files"]),
             r["error"] or ""] for r in rows]
    return fitted("mobilectl build", columns, body, width=width)


PER_LAYER_ROWS = 15


def per_layer_table(measurement: dict[str, Any], *, width: int,
                    limit: int = PER_LAYER_ROWS) -> Table:
    """The slowest rows of one artifact's per-layer table, with their flags (and, for
    an int8 table beside its float twin, the float time and int8 error of each row)."""
    data = measurement["per_layer"]
    rows = sorted(data["rows"], key=lambda r: -(r["ms"] or 0.0))[:limit]
    twin = any(r.get("float_ms") is not None for r in data["rows"])
    error = any(r.get("rmse_steps") is not None for r in data["rows"])
    columns = (Column("layer"), Column("op", drop=3), Column("ms", right=True),
               Column("%", right=True, drop=2), Column("MMACs", right=True, drop=5),
               Column("GMAC/s", right=True, drop=4),
               *((Column("/fp32", right=True, drop=1),) if twin else ()),
               *((Column("err", right=True, drop=1),) if error else ()), Column("why", wrap=True))
    body = [[layer_text(r["layers"]) or f"({r['name'][:40]})", r["kind"], _num(r["ms"], ".3f"),
             "-" if r["share"] is None else f"{100 * r['share']:.1f}",
             f"{r['macs'] / 1e6:.1f}", _num(r["gmacs"], ".1f"),
             *((_num(r.get("versus_float"), ".2f"),) if twin else ()),
             *((_num(r.get("rmse_steps"), ".2f"),) if error else ()), ", ".join(r["flags"])]
            for r in rows]
    ratio = data["parts_over_whole"]
    caption = (f"{data['method']}; ops sum to {data['sum_ms']:.3f} ms"
               + (f", {ratio:.2f}x the whole model's {data['whole_ms']:.3f} ms" if ratio else "")
               + f"; {len(data['unmapped'])} op(s) map to no layer"
               + ("; /fp32: int8 over float time of the same layers" if twin else "")
               + ("; err: int8 error, rmse in quantization steps" if error else ""))
    return fitted(f"{measurement['artifact']}: slowest {len(rows)} of {len(data['rows'])} ops",
                  columns, body, width=width, caption=caption)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def eval_table(rows: list[dict[str, Any]], *, width: int) -> Table:
    """``mobilectl eval``: each artifact's accuracy next to its float model's."""
    columns = (Column("artifact"), Column("prec"), Column("top-1", right=True),
               Column("top-5", right=True, drop=2), Column("float top-1", right=True, drop=1),
               Column("drop", right=True))
    body = [[r["artifact"], r["precision"], _share(r["top1"]), _share(r["top5"]),
             _share(r["float_top1"]), "-" if r["top1_drop"] is None
             else f"{100 * r['top1_drop']:+.1f} pt"] for r in rows]
    first = rows[0] if rows else None
    caption = (f"{first['samples']} samples of {first['data']}, {first['classes']} classes"
               if first else None)
    missing = sorted({f"no float model for {r['model']}: {r['float_model']}" for r in rows
                      if r["float_top1"] is None})
    caption = "\n".join(filter(None, [caption, *missing])) or None
    return fitted("mobilectl eval", columns, body, width=width, caption=caption)


def prune_table(report: dict[str, Any], *, width: int) -> Table:
    """``mobilectl prune``: cost and accuracy before, right after pruning, after
    fine-tuning; the caption says how many layers were pruned and which stayed whole."""
    columns = (Column("model"), Column("MACs", right=True), Column("params", right=True),
               Column("nonzero", right=True, drop=2), Column("top-1", right=True),
               Column("top-5", right=True, drop=1))
    body = [[label, millions(s["macs"], 1), millions(s["params"], 2), millions(s["nonzero"], 2),
             _share(s["top1"]), _share(s["top5"])]
            for label, s in (("before", report["before"]), ("pruned", report["pruned"]),
                             (f"fine-tuned ({report['options']['epochs']} ep)", report["after"]))]
    return fitted(f"mobilectl prune: {report['model']}", columns, body, width=width,
                  caption=_prune_caption(report))


def _prune_caption(report: dict[str, Any]) -> str:
    options, whole = report["options"], report["left_whole"]
    if options["sparsity"] is not None:
        return (f"{options['method']}, sparsity {options['sparsity']:g}: {len(report['groups'])} "
                f"kernel(s) pruned; validation {report['val_samples']} samples")
    caption = (f"{options['method']}, ratio {options['ratio']:g}: "
               f"{len(report['groups'])} group(s) pruned, {len(whole)} layer(s) left whole; "
               f"validation {report['val_samples']} samples")
    shown = list(whole.items())[:3]
    caption += "".join(f"\n{name}: left whole because {why}" for name, why in shown)
    if len(whole) > len(shown):
        caption += f"\n... and {len(whole) - len(shown)} more (--json lists them)"
    return caption


def qat_table(report: dict[str, Any], *, width: int) -> Table:
    """``mobilectl qat``: top-1 of the float model, the QAT Keras model and each
    artifact as it runs, with file sizes."""
    columns = (Column("model"), Column("weights"), Column("size", right=True),
               Column("top-1", right=True), Column("vs float", right=True, drop=1))
    base = report["float_top1"]
    body = [["float (before)", "float", "-", _share(base), "-"],
            [f"QAT Keras ({report['options']['epochs']} ep)", f"int{report['options']['weight_bits']}",
             "-", _share(report["qat_top1"]), f"{report['qat_top1'] - base:+.3f}"]]
    body += [[a["path"], a["weights"], f"{a['bytes'] / 1e6:.2f} MB", _share(a["top1"]),
              f"{a['top1'] - base:+.3f}"] for a in report["artifacts"]]
    return fitted(f"mobilectl qat: {report['model']}", columns, body, width=width,
                  caption=f"validation {report['val_samples']} samples; trained on "
                          f"{report['train_samples']}")


def mixed_table(report: dict[str, Any], *, width: int) -> Table:
    """``export --mixed``: the recipes the search measured and the one chosen, against
    uniform int8; then the layers off int8."""
    columns = (Column("recipe"), Column("off int8", right=True), Column("top-1", right=True),
               Column("drop", right=True), Column("size", right=True),
               Column("latency", right=True, drop=1))
    chosen = report["chosen"]["step"]

    def row(label: str, p: dict[str, Any]) -> list[str]:
        ms = "-" if p["latency_ms"] is None else f"{p['latency_ms']:.3f} ms"
        return [label, str(len(p["layers"])), _share(p["top1"]), f"{p['drop_pt']:.2f} pt",
                f"{p['bytes'] / 1e6:.3f} MB", ms]
    body = [row(("* " if p["step"] == chosen else "  ") + f"step {p['step']}", p)
            for p in report["trace"]]
    body.append(row("  uniform int8", report["uniform_int8"]))
    off = [c for c in report["layers"] if c["precision"] != "int8"]
    shown = ", ".join(f"{c['layer']}={c['precision']}" for c in off[:6])
    more = f" and {len(off) - 6} more" if len(off) > 6 else ""
    return fitted(f"mobilectl export --mixed: {report['model']}, {report['budget']}",
                  columns, body, width=width,
                  caption=f"{report['metric']} (float {report['float_top1']:.3f}); * chosen: "
                          f"{report['verdict']}; off int8: {shown or 'none'}{more}")


def _ms(value: float | None, *, bound: bool = False) -> str:
    return "-" if value is None else (">=" if bound else "") + f"{value:.2f}"


def predict_table(report: dict[str, Any], *, width: int, rows: int | None) -> Table:
    """``mobilectl predict``: per layer, the predicted ms next to MACs (the heaviest
    ``rows`` layers, or every layer with ``rows=None``)."""
    layers = sorted(report["layers"], key=lambda r: -(r["ms"] or 0.0))
    shown = layers if rows is None else layers[:rows]
    columns = (Column("layer"), Column("op", drop=2), Column("MACs", right=True, drop=1),
               Column("predicted ms", right=True), Column("share", right=True, drop=3))
    body = [[layer_text(r["layers"]) or r["name"], r["kind"], millions(r["macs"]),
             "no model" if r["ms"] is None else f"{r['ms']:.3f}", _share(r["share"])]
            for r in shown]
    more = len(layers) - len(shown)
    caption = f"{more} lighter rows not shown (--per-layer shows all)" if more else None
    return fitted(f"{report['model']} {report['precision']}: per layer, predicted", columns,
                  body, width=width, caption=caption)


def predict_summary_table(reports: list[dict[str, Any]], *, width: int, device: str) -> Table:
    """``mobilectl predict``: each network's predicted total, MACs, and the measured
    figure and error with ``--measure``."""
    measured = any(r["measured_ms"] is not None for r in reports)
    columns = (Column("model"), Column("precision", drop=2), Column("MACs", right=True, drop=1),
               Column("predicted ms", right=True),
               *((Column("measured ms", right=True), Column("error", right=True)) if measured else ()))
    body = [[r["model"], r["precision"], millions(r["macs"]),
             _ms(r["predicted_ms"], bound=r["lower_bound"]),
             *((_ms(r["measured_ms"]), "-" if r["error_pct"] is None else f"{r['error_pct']:+.1f}%")
               if measured else ())] for r in reports]
    return fitted(f"predicted latency on {device}", columns, body, width=width,
                  caption="predicted from the device's kernel table; >= : a lower bound "
                          "(kernels with no model left out)")


def calibrate_table(report: dict[str, Any], *, width: int) -> Table:
    """``mobilectl device calibrate``: what each kernel type's regressor learned."""
    columns = (Column("kernel"), Column("rows", right=True), Column("fixed us", right=True, drop=3),
               Column("GMAC/s", right=True, drop=1), Column("GB/s", right=True, drop=2),
               Column("fit RMSPE", right=True))
    body = [[f["kernel"], str(f["rows"]), f"{f['fixed_us']:.1f}", _num(f["gmacs"], ".1f"),
             _num(f["gbs"], ".1f"), f"{f['rmspe']:.0%}"] for f in report["fits"]]
    graph = "; ".join(f"{g['precision']}: {g['form']}, x{g['scale']:.2f}"
                      + (f" + {g['per_op_us']:.1f} us/op" if g["per_op_us"] else "")
                      + (f" + bytes at {g['gbs']:.0f} GB/s" if g["gbs"] else "")
                      + (f" ({g['chains']} chains, leave-one-out RMSPE {g['rmspe']:.0%})"
                         if g["chains"] else " (too few chains yet: kernels alone)")
                      for g in report["in_graph"])
    return fitted(f"kernel table of {report['device']}: {report['blocks']} blocks, "
                  f"{report['kernels']} kernels", columns, body, width=width,
                  caption=f"in a graph: {graph}")
