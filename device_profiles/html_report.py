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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_profiles.layer_map import layer_text
from device_profiles.measurement import Measurement
from device_profiles.per_layer import LayerPair, PerLayer, compare
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
    head = ("<tr><th>#</th><th>layers</th><th>op</th><th>ms</th><th>%</th><th>MMACs</th>"
            "<th>MB moved</th><th>GMAC/s</th><th>kernel</th><th>why</th></tr>")
    body = []
    for n, r in enumerate(table.rows):
        cells = [str(n), html.escape(layer_text(r.layers) or f"({r.name})"),
                 html.escape(r.kind), _num(r.ms, ".3f"),
                 _num(r.share and 100 * r.share, ".1f"), f"{r.macs / 1e6:.2f}",
                 f"{r.memory_bytes / 1e6:.2f}", _num(r.gmacs, ".1f"),
                 html.escape(r.kernel or "-"), html.escape(", ".join(r.flags))]
        numeric = {0, 3, 4, 5, 6, 7}
        tds = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                      for i, c in enumerate(cells))
        body.append(f'<tr class="flag">{tds}</tr>' if r.flags else f"<tr>{tds}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def pairs_of(measurements: Sequence[Measurement]) -> dict[str, tuple[Measurement, Measurement]]:
    """(int8, float) measurements of the same model, format and device."""
    floats = {(m.model, m.fmt, m.device): m for m in measurements
              if m.per_layer and m.precision == "fp32"}
    return {m.artifact: (m, floats[(m.model, m.fmt, m.device)]) for m in measurements
            if m.per_layer and m.precision == "int8" and (m.model, m.fmt, m.device) in floats}


def _section(m: Measurement, table: PerLayer, pair: PerLayer | None, pair_name: str) -> str:
    ratio = table.parts_over_whole
    parts = [f"<h2>{html.escape(m.artifact)}</h2>",
             f'<p class="cap">{html.escape(table.method)}; {m.precision} {m.fmt}, '
             f"{m.threads} thread(s). The ops sum to {table.sum_ms:.3f} ms"
             + (f", {ratio:.2f}x the whole model's {table.whole_ms:.3f} ms" if ratio else "")
             + f". Whole model (benchmark): median {m.latency.median_ms:.3f} ms.</p>",
             f'<img alt="time by layer" src="{bar_chart(table, title="time by layer")}">',
             f'<img alt="time vs MACs" src="{scatter(table, title="time vs MACs per op")}">']
    if pair is not None:
        pairs = compare(table, pair)
        parts.append(f"<h3>int8 vs {html.escape(pair_name)}, per layer</h3>"
                     f'<img alt="int8 vs float" src="'
                     f'{ratio_chart(pairs, title=f"int8 vs {pair_name}")}">')
    parts.append(_table(table))
    return "\n".join(parts)


def write_html(out: Path, measurements: Sequence[Measurement], *, device: str) -> Path | None:
    """``profile.html`` with a section per artifact that has a per-layer table."""
    timed = [m for m in measurements if m.per_layer]
    if not timed:
        return None
    pairs = pairs_of(timed)
    sections = []
    for m in timed:
        other = pairs[m.artifact][1] if m.artifact in pairs else None
        sections.append(_section(m, m.per_layer, other.per_layer if other else None,
                                 other.artifact if other else ""))
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>mobilectl profile: "
            f"{html.escape(device)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Per-layer latency on {html.escape(device)}</h1>{''.join(sections)}"
            "</body></html>\n")
    path = out / HTML_NAME
    write_atomic(path, page.encode())
    return path


def node_data(table: PerLayer, *, label: str) -> dict[str, Any]:
    """Model Explorer's node data for one graph: each timed op's ms keyed by the output
    tensor of the file op that ends it (how Model Explorer matches a node)."""
    results = {row.tensor: {"value": round(row.ms, 6)} for row in table.rows
               if row.tensor and row.ms is not None}
    return {"name": label, "results": results,
            "gradient": [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 1, "bgColor": "#d9534f"}]}


def write_node_data(out: Path, artifact: str, table: PerLayer, *, device: str) -> Path:
    """``ARTIFACT.node_data.json`` beside the report."""
    data = node_data(table, label=f"ms on {device}")
    path = out / f"{artifact}.node_data.json"
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path
