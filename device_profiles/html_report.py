"""The per-layer report a person looks at: one self-contained HTML file (charts are
PNGs inlined as data URIs; no script, font or style is fetched) and, per artifact, a
Model Explorer node-data file that overlays each op's measured time on the graph
(``model-explorer MODEL --node_data_paths=FILE``).

Charts per artifact: time by layer (the slowest rows), time against MACs per op (log
scales; ops LiteRT ran outside XNNPACK in red), and, when the same model was
measured in int8 and float, int8 time over float time per layer.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from device_profiles.layer_map import layer_text
from device_profiles.measurement import Measurement
from device_profiles.per_layer import LayerPair, PerLayer
from mobilectl.core.files import write_atomic

HTML_NAME = "profile.html"
BAR_ROWS = 20
_STYLE = """body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f0f0f0}td.n{text-align:right}tr.flag td{background:#fff3f0}
h2{margin-top:32px}img{max-width:100%}.cap{color:#555}"""


def _png(fig: Any) -> str:
    """The figure as a PNG data URI; the figure is closed."""
    import matplotlib.pyplot as plt  # heavy: only when a report is drawn

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _pyplot() -> Any:
    import matplotlib  # heavy: only when a report is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(labels: Sequence[str], values: Sequence[float], colors: Sequence[str], *,
          xlabel: str, title: str, reference: float | None = None) -> str:
    """Horizontal bars, the first value at the bottom; a vertical line at ``reference``."""
    fig, ax = _pyplot().subplots(figsize=(9, 0.28 * len(values) + 1.2), dpi=110)
    ax.barh(range(len(values)), values, color=list(colors))
    if reference is not None:
        ax.axvline(reference, color="#333", linewidth=0.8)
    ax.set_yticks(range(len(values)), list(labels), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def bar_chart(table: PerLayer, *, title: str) -> str:
    """The slowest rows as horizontal bars (ms), red where a flag says why."""
    rows = sorted((r for r in table.rows if r.ms), key=lambda r: -(r.ms or 0))[:BAR_ROWS][::-1]
    labels = [f"{(layer_text(r.layers) or f'({r.kind})')[:48]}  {r.kind}" for r in rows]
    return _bars(labels, [r.ms for r in rows],
                 ["#d9534f" if r.flags else "#4a7fb5" for r in rows],
                 xlabel="ms (red: flagged)", title=title)


def scatter(table: PerLayer, *, title: str) -> str:
    """ms against MACs for every op with MACs; builtin-kernel ops in red."""
    rows = [r for r in table.rows if r.macs and r.ms]
    fig, ax = _pyplot().subplots(figsize=(7, 4.5), dpi=110)
    for builtin, color, label in ((False, "#4a7fb5", "XNNPACK / runtime kernel"),
                                  (True, "#d9534f", "LiteRT builtin kernel")):
        pick = [r for r in rows if (r.kernel == "builtin") == builtin]
        if pick:
            ax.scatter([r.macs / 1e6 for r in pick], [r.ms for r in pick], s=12, c=color,
                       label=label)
    if rows:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("ms")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def ratio_chart(pairs: Sequence[LayerPair], *, title: str) -> str:
    """int8 ms over float ms for the layers with the most extra time."""
    rows = [p for p in pairs if p.ratio][:BAR_ROWS][::-1]
    return _bars([layer_text(p.layers)[:56] for p in rows], [p.ratio for p in rows],
                 ["#d9534f" if p.ratio > 1 else "#5cb85c" for p in rows],
                 xlabel="int8 ms / float ms (red: int8 slower)", title=title, reference=1.0)


def _table(table: PerLayer) -> str:
    twin = table.has_float_twin
    names = ["#", "layers", "op", "ms", "%", "MMACs", "MB moved", "GMAC/s", "kernel",
             *(["float ms", "int8 / float", "int8 error (steps)"] if twin else []), "why"]
    head = "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    numeric = {0, 3, 4, 5, 6, 7, 9, 10, 11}
    body = []
    for n, r in enumerate(table.rows):
        cells = [str(n), html.escape(layer_text(r.layers) or f"({r.name})"),
                 html.escape(r.kind), _num(r.ms, ".3f"),
                 _num(r.share and 100 * r.share, ".1f"), f"{r.macs / 1e6:.2f}",
                 f"{r.memory_bytes / 1e6:.2f}", _num(r.gmacs, ".1f"),
                 html.escape(r.kernel or "-"),
                 *([_num(r.float_ms, ".3f"), _num(r.versus_float, ".2f"),
                    _num(r.rmse_steps, ".2f")] if twin else []),
                 html.escape(", ".join(r.flags))]
        tds = "".join(f'<td class="n">{c}</td>' if i in numeric and i < len(cells) - 1
                      else f"<td>{c}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="flag">{tds}</tr>' if r.flags else f"<tr>{tds}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def _section(m: Measurement, table: PerLayer, versus: tuple[str, Sequence[LayerPair]] | None
             ) -> str:
    ratio = table.parts_over_whole
    parts = [f"<h2>{html.escape(m.artifact)}</h2>",
             f'<p class="cap">{html.escape(table.method)}; {m.precision} {m.fmt}, '
             f"{m.threads} thread(s). The ops sum to {table.sum_ms:.3f} ms"
             + (f", {ratio:.2f}x the whole model's {table.whole_ms:.3f} ms" if ratio else "")
             + f". Whole model (benchmark): median {m.latency.median_ms:.3f} ms.</p>",
             f'<img alt="time by layer" src="{bar_chart(table, title="time by layer")}">',
             f'<img alt="time vs MACs" src="{scatter(table, title="time vs MACs per op")}">']
    if versus is not None:
        twin, pairs = versus
        parts.append(f"<h3>int8 vs {html.escape(twin)}, per layer</h3>"
                     f'<img alt="int8 vs float" src="'
                     f'{ratio_chart(pairs, title=f"int8 vs {twin}")}">')
    parts.append(_table(table))
    return "\n".join(parts)


def write_html(out: Path, measurements: Sequence[Measurement], *, device: str,
               paired: Mapping[str, tuple[str, Sequence[LayerPair]]]) -> Path | None:
    """``profile.html`` with a section per artifact that has a per-layer table;
    ``paired``: int8 artifacts' float twins and their per-layer comparison."""
    timed = [m for m in measurements if m.per_layer]
    if not timed:
        return None
    sections = [_section(m, m.per_layer, paired.get(m.artifact)) for m in timed]
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>mobilectl profile: "
            f"{html.escape(device)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Per-layer latency on {html.escape(device)}</h1>{''.join(sections)}"
            "</body></html>\n")
    path = out / HTML_NAME
    write_atomic(path, page.encode())
    return path


def node_data(table: PerLayer, *, label: str, field: str = "ms") -> dict[str, Any]:
    """Model Explorer's node data for one graph: each row's ``field`` (``ms`` or
    ``rmse_steps``) keyed by the output tensor of the file op that ends it (how Model
    Explorer matches a node)."""
    results = {row.tensor: {"value": round(getattr(row, field), 6)} for row in table.rows
               if row.tensor and getattr(row, field) is not None}
    return {"name": label, "results": results,
            "gradient": [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 1, "bgColor": "#d9534f"}]}


def write_node_data(out: Path, artifact: str, table: PerLayer, *, device: str) -> list[Path]:
    """``ARTIFACT.node_data.json`` (ms) beside the report, and
    ``ARTIFACT.int8_error.node_data.json`` when the rows carry int8 errors."""
    files = [(f"{artifact}.node_data.json", node_data(table, label=f"ms on {device}"))]
    if any(r.rmse_steps is not None for r in table.rows):
        files.append((f"{artifact}.int8_error.node_data.json",
                      node_data(table, label="int8 error (rmse, steps)", field="rmse_steps")))
    for name, data in files:
        write_atomic(out / name, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return [out / name for name, _ in files]
