"""The audit's reports: a terminal table, a JSON file and a self-contained HTML page.

The HTML page loads nothing from anywhere: its style and its plot (inline SVG,
cost per 1,000 items against accuracy, the Pareto front drawn and marked) are in
the file, so it opens offline and can be mailed or committed as it is.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _money(value: float) -> str:
    """Dollars with enough digits to tell a baseline's fractions of a cent apart."""
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.2g}"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _significance(row: dict[str, Any]) -> str:
    versus = row["vs_best"]
    if versus is None:
        return "best"
    mark = "worse" if versus["significant"] else "n.s."
    return f"{mark} (p={versus['p_value']:.3g})"


def terminal_table(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"audit {summary['suite']}: {summary['items']} items, "
                        f"target {summary['target_accuracy']:.0%}")
    for heading in ("candidate", "accuracy (95% CI)", "meets", "vs best", "contract",
                    "tokens in/out", "p50/p95 ms", "$ / 1k items"):
        table.add_column(heading, justify="left" if heading == "candidate" else "right")
    for row in summary["candidates"]:
        table.add_row(
            f"{row['name']}\n[dim]{row['describe']}[/dim]",
            f"{row['accuracy']:.1%} ({row['ci_low']:.1%}-{row['ci_high']:.1%})",
            "yes" if row["meets_target"] else "no", _significance(row),
            _pct(row["contract_pass_rate"]),
            f"{row['prompt_tokens_per_item']:.0f}/{row['completion_tokens_per_item']:.0f}",
            f"{row['latency_p50_ms']:.0f}/{row['latency_p95_ms']:.0f}",
            _money(row["cost_per_1000"]))
    console.print(table)
    console.print(f"model calls {summary['model_calls']}, cached answers "
                  f"{summary['cache_hits']}, {summary['seconds']:.1f} s")
    console.print(summary["recommendation"]["text"])


def write_json(summary: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(
        summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


# ---- HTML ----

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.3rem .6rem;
border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
.verdict{padding:.8rem 1rem;border-left:4px solid #2a7;background:#f3faf6}
.verdict.none{border-color:#c33;background:#fbf2f2}small{color:#666}
details{margin:.5rem 0}svg text{font:12px system-ui,sans-serif}
"""


def html_report(summary: dict[str, Any]) -> str:
    e = html.escape
    verdict = summary["recommendation"]
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>Audit {e(summary['suite'])}</title><style>{_STYLE}</style>",
        f"<h1>Audit: {e(summary['suite'])}</h1>",
        f"<p>{e(summary['description'])}</p>" if summary["description"] else "",
        f"<p><small>{summary['items']} items sampled from {summary['items_in_data']} "
        f"(seed {summary['sample_seed']}); target accuracy "
        f"{summary['target_accuracy']:.0%}; scorer {e(str(summary['scorer']))}; "
        f"{summary['model_calls']} model calls, {summary['cache_hits']} cached; "
        f"{e(summary['created'])}</small></p>",
        f"<p class='verdict{'' if verdict['candidate'] else ' none'}'>"
        f"{e(verdict['text'])}</p>",
        _candidate_table(summary),
        "<h2>Cost against accuracy</h2>", cost_accuracy_svg(summary),
        "<p><small>Filled points are on the Pareto front (no other candidate is "
        "both cheaper and more accurate); bars are 95% intervals; the dashed line "
        "is the target.</small></p>",
        _confusion_section(summary), "</html>",
    ]
    return "\n".join(p for p in parts if p)


def _candidate_table(summary: dict[str, Any]) -> str:
    e = html.escape
    head = ("<tr><th>candidate</th><th>accuracy</th><th>95% CI</th><th>meets target"
            "</th><th>vs best</th><th>contract pass</th><th>tokens in/out per item"
            "</th><th>latency p50/p95 ms</th><th>$ per 1,000 items</th></tr>")
    rows = []
    for r in summary["candidates"]:
        extra = ""
        if "micro_f1" in r:
            extra = (f"<br><small>P {r['micro_precision']:.2f} R "
                     f"{r['micro_recall']:.2f} F1 {r['micro_f1']:.2f}</small>")
        if r.get("train_seconds") is not None:
            extra += f"<br><small>trained in {r['train_seconds']:.2f} s</small>"
        rows.append(
            f"<tr><td><b>{e(r['name'])}</b><br><small>{e(r['describe'])}</small></td>"
            f"<td>{r['accuracy']:.1%}{extra}</td>"
            f"<td>{r['ci_low']:.1%} to {r['ci_high']:.1%}</td>"
            f"<td>{'yes' if r['meets_target'] else 'no'}</td>"
            f"<td>{e(_significance(r))}</td><td>{_pct(r['contract_pass_rate'])}</td>"
            f"<td>{r['prompt_tokens_per_item']:.0f} / "
            f"{r['completion_tokens_per_item']:.0f}</td>"
            f"<td>{r['latency_p50_ms']:.0f} / {r['latency_p95_ms']:.0f}</td>"
            f"<td>{_money(r['cost_per_1000'])}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def cost_accuracy_svg(summary: dict[str, Any], width: int = 640,
                      height: int = 360) -> str:
    """Accuracy (y) against cost per 1,000 items (x, log scale when it spans decades)."""
    rows = summary["candidates"]
    front = set(summary["pareto_front"])
    left, right, top, bottom = 70, 20, 20, 50
    costs = [max(r["cost_per_1000"], 1e-9) for r in rows]
    low, high = min(costs), max(costs)
    log = high / low > 20
    if log:
        low, high = 10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high))
    else:
        low, high = 0.0, high * 1.15 or 1.0

    def x(value: float) -> float:
        value = max(value, 1e-9)
        share = ((math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
                 if log else (value - low) / (high - low))
        return left + share * (width - left - right)

    def y(value: float) -> float:
        return top + (1 - value) * (height - top - bottom)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height}' role='img' aria-label='cost against accuracy'>",
             f"<rect x='{left}' y='{top}' width='{width - left - right}' "
             f"height='{height - top - bottom}' fill='none' stroke='#999'/>"]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f"<text x='{left - 8}' y='{y(tick) + 4:.1f}' "
                     f"text-anchor='end'>{tick:.0%}</text>")
    for label_value in ([low, high] if not log else _decades(low, high)):
        parts.append(f"<text x='{x(label_value):.1f}' y='{height - bottom + 18}' "
                     f"text-anchor='middle'>${label_value:.3g}</text>")
    parts.append(f"<text x='{(left + width - right) / 2}' y='{height - 8}' "
                 f"text-anchor='middle'>$ per 1,000 items{' (log)' if log else ''}</text>")
    target = summary["target_accuracy"]
    parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y(target):.1f}' "
                 f"y2='{y(target):.1f}' stroke='#c33' stroke-dasharray='5 4'/>")
    parts.append(_front_line(rows, front, x, y))
    for row in rows:
        cx, cy = x(row["cost_per_1000"]), y(row["accuracy"])
        on_front = row["name"] in front
        parts.append(
            f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{y(row['ci_low']):.1f}' "
            f"y2='{y(row['ci_high']):.1f}' stroke='#888'/>"
            f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='6' stroke='#2a5' stroke-width='2' "
            f"fill='{'#2a5' if on_front else 'white'}'><title>"
            f"{html.escape(row['name'])}</title></circle>"
            f"{_point_label(row['name'], cx, cy, width)}")
    parts.append("</svg>")
    return "".join(parts)


def _point_label(name: str, cx: float, cy: float, width: int) -> str:
    """A point's name, to its left in the right half so it stays inside the plot."""
    if cx > width / 2:
        return (f"<text x='{cx - 9:.1f}' y='{cy - 8:.1f}' text-anchor='end'>"
                f"{html.escape(name)}</text>")
    return f"<text x='{cx + 9:.1f}' y='{cy - 8:.1f}'>{html.escape(name)}</text>"


def _decades(low: float, high: float) -> list[float]:
    return [10 ** p for p in range(round(math.log10(low)), round(math.log10(high)) + 1)]


def _front_line(rows: list[dict[str, Any]], front: set[str], x: Any, y: Any) -> str:
    points = sorted((r["cost_per_1000"], r["accuracy"]) for r in rows
                    if r["name"] in front)
    if len(points) < 2:
        return ""
    path = " ".join(f"{x(c):.1f},{y(a):.1f}" for c, a in points)
    return f"<polyline points='{path}' fill='none' stroke='#2a5' stroke-width='1.5'/>"


def _confusion_section(summary: dict[str, Any]) -> str:
    confusion = summary.get("confusion")
    if not confusion:
        return ""
    e = html.escape
    parts = ["<h2>Per-class confusion summary</h2>"]
    for name, data in confusion.items():
        mixups = "".join(f"<tr><td>{e(str(m['expected']))}</td>"
                         f"<td>{e(str(m['predicted']))}</td><td>{m['count']}</td></tr>"
                         for m in data["mixups"]) or "<tr><td>none</td></tr>"
        classes = "".join(
            f"<tr><td>{e(str(c['label']))}</td><td>{c['support']}</td>"
            f"<td>{c['correct']}</td><td>{c['recall']:.0%}</td>"
            f"<td>{_pct(c['precision'])}</td></tr>" for c in data["classes"])
        parts.append(
            f"<h3>{e(name)}</h3><table><tr><th>expected</th><th>predicted instead</th>"
            f"<th>times</th></tr>{mixups}</table><details><summary>every class "
            f"({len(data['classes'])})</summary><table><tr><th>class</th>"
            f"<th>items</th><th>right</th><th>recall</th><th>precision</th></tr>"
            f"{classes}</table></details>")
    return "".join(parts)


def write_reports(summary: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """``audit.json`` and ``audit.html`` in ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "audit.json", folder / "audit.html"
    write_json(summary, json_path)
    html_path.write_text(html_report(summary), encoding="utf-8")
    return json_path, html_path
