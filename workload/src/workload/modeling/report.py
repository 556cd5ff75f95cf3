"""A training run's curves as one self-contained HTML page: inline SVG, no scripts, no external URL.

It plays the role a tracking server's charts would, kept with the bundle (and, on AWS, next to the run's log).
"""

from __future__ import annotations

import html

WIDTH, HEIGHT, MARGIN = 480, 240, 40
COLOURS = {"train": "#1f77b4", "validation": "#d62728"}


def _polyline(values: list[float], low: float, high: float) -> str:
    span = (high - low) or 1.0
    step = (WIDTH - 2 * MARGIN) / max(len(values) - 1, 1)
    return " ".join(
        f"{MARGIN + i * step:.1f},{HEIGHT - MARGIN - (value - low) / span * (HEIGHT - 2 * MARGIN):.1f}"
        for i, value in enumerate(values)
    )


def _chart(history: list[dict], metric: str) -> str:
    """One SVG chart of `train_<metric>` and `validation_<metric>` per epoch."""
    series = {side: [row[f"{side}_{metric}"] for row in history] for side in COLOURS}
    everything = [value for values in series.values() for value in values]
    low, high = min(everything), max(everything)
    lines = "".join(
        f'<polyline fill="none" stroke="{COLOURS[side]}" stroke-width="2" points="{_polyline(values, low, high)}"/>'
        f'<text x="{WIDTH - MARGIN}" y="{16 + 14 * index}" fill="{COLOURS[side]}" text-anchor="end">{side}</text>'
        for index, (side, values) in enumerate(series.items())
    )
    return (
        f"<figure><figcaption>{metric} per epoch (1-{len(history)})</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-size="12" role="img">'
        f'<text x="4" y="{MARGIN}">{high:.4f}</text><text x="4" y="{HEIGHT - MARGIN}">{low:.4f}</text>'
        f"{lines}</svg></figure>"
    )


def training_report(history: list[dict], title: str) -> str:
    """The HTML page: a loss chart, an accuracy chart and the figures as a table."""
    columns = ["epoch", "train_loss", "validation_loss", "train_accuracy", "validation_accuracy"]
    rows = "".join("<tr>" + "".join(f"<td>{row[column]:.4g}</td>" for column in columns) + "</tr>" for row in history)
    heading = "".join(f"<th>{column}</th>" for column in columns)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><h1>{html.escape(title)}</h1>{_chart(history, 'loss')}{_chart(history, 'accuracy')}"
        f"<table><tr>{heading}</tr>{rows}</table></body></html>\n"
    )
