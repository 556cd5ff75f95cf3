"""`report.html`: one self-contained page (inline SVG and CSS, no script, no external URL) for a monitor run."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, MARGIN = 560, 220, 36
COLOURS = {"baseline": "#7a8ca3", "current": "#d9822b", "ok": "#2e7d32", "warning": "#f9a825", "drift": "#c62828"}
STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:62rem;color:#222}
table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}
.drift{color:#c62828;font-weight:bold}.warning{color:#a07800}.ok{color:#2e7d32}svg{display:block;margin:1rem 0}"""


def _svg(title: str, body: list[str]) -> str:
    heading = f'<text x="{MARGIN}" y="18" font-size="14">{escape(title)}</text>'
    return f'<svg width="{WIDTH}" height="{HEIGHT}" role="img">' + "".join(
        [heading, *body]
    ) + "</svg>"  # fmt: skip


def histogram_svg(title: str, labels: Sequence[str], series: dict[str, Sequence[float]]) -> str:
    """Grouped bars: each series' share per bin (baseline against current)."""
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN - 10
    top = max([max(values, default=0.0) for values in series.values()] + [1e-9])
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    body = []
    for index, label in enumerate(labels):
        x0 = MARGIN + index * slot
        for offset, (name, values) in enumerate(series.items()):
            height = plot_h * values[index] / top
            y = MARGIN + 10 + plot_h - height
            body.append(
                f'<rect x="{x0 + offset * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{COLOURS[name]}"><title>{escape(name)} {escape(label)}: {values[index]:.3f}</title></rect>'
            )
        body.append(f'<text x="{x0 + slot / 2:.1f}" y="{HEIGHT - 8}" font-size="9" text-anchor="middle">'
                    f"{escape(label)}</text>")  # fmt: skip
    for offset, name in enumerate(series):
        body.append(f'<text x="{WIDTH - 150 + offset * 70}" y="18" font-size="11" fill="{COLOURS[name]}">'
                    f"{escape(name)}</text>")  # fmt: skip
    return _svg(title, body)


def checks_svg(checks: dict[str, dict]) -> str:
    """One horizontal bar per check, its value as a share of twice its drift threshold, with both thresholds."""
    row = (HEIGHT - MARGIN) / max(len(checks), 1)
    scale_w = WIDTH - 2 * MARGIN - 150
    body = []
    for index, (name, check) in enumerate(checks.items()):
        y = MARGIN + index * row
        full = 2 * check["threshold"] or 1.0
        value = check["value"] or 0.0
        colour = COLOURS.get(check["status"], COLOURS["baseline"])
        body.append(f'<text x="{MARGIN}" y="{y + row / 2 + 4:.1f}" font-size="11">{escape(name)}</text>')
        width = scale_w * min(value / full, 1.0)
        body.append(f'<rect x="{MARGIN + 150}" y="{y + 4:.1f}" width="{width:.1f}" height="{row - 8:.1f}" '
                    f'fill="{colour}"><title>{value:.4f} ({check["status"]})</title></rect>')  # fmt: skip
        for limit, dash in ((check["warning"], "4 3"), (check["threshold"], "")):
            x = MARGIN + 150 + scale_w * min(limit / full, 1.0)
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 2:.1f}" y2="{y + row - 2:.1f}" stroke="#222" '
                        f'stroke-dasharray="{dash}"/>')  # fmt: skip
    return _svg("checks: value (bar), warning (dashed) and drift (solid) thresholds", body)


def _bin_labels(edges: Sequence[float], digits: int) -> list[str]:
    return [f"{low:.{digits}f}-{high:.{digits}f}" for low, high in itertools.pairwise(edges)]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_html(summary: dict, baseline: dict, current_shares: dict[str, list[float]]) -> str:
    """The page: the verdict, the checks table and plots, and both histograms (baseline against current)."""
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{_number(c['value'])}</td>"
        f'<td>{c["warning"]}</td><td>{c["threshold"]}</td><td class="{c["status"]}">{c["status"]}</td></tr>'
        for name, c in summary["checks"].items()
    )
    verdict = "DRIFT" if summary["drift"] else "no drift"
    plots = [
        checks_svg(summary["checks"]),
        histogram_svg("score (P(positive)) shares", _bin_labels(baseline["score"]["edges"], 1),
                      {"baseline": baseline["score"]["shares"], "current": current_shares["score"]}),
        histogram_svg("input length (tokens) shares", _bin_labels(baseline["token_length"]["edges"], 0),
                      {"baseline": baseline["token_length"]["shares"], "current": current_shares["token_length"]}),
    ]  # fmt: skip
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Model monitoring: "
        f"{escape(summary['model_version'])}</title><style>{STYLE}</style></head><body>"
        f'<h1>Model monitoring: <span class="{"drift" if summary["drift"] else "ok"}">{verdict}</span></h1>'
        f"<p>Model <code>{escape(summary['model_version'])}</code>, {summary['n']} captured records from "
        f"{escape(summary['window']['since'])} to {escape(summary['window']['until'])}.</p>"
        f"<table><tr><th>check</th><th>value</th><th>warning</th><th>drift</th><th>status</th></tr>{rows}</table>"
        f"{''.join(plots)}<details><summary>report.json</summary><pre>{escape(json.dumps(summary, indent=2))}"
        f"</pre></details></body></html>\n"
    )
