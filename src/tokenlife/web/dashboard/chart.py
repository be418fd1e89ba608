"""The refresh chart as inline SVG: drawn on the server, no script and no library needed.
Colours come from classes in dashboard.css (the CSP allows no inline style)."""

from __future__ import annotations

from tokenlife.core.events import iso8601
from tokenlife.core.refresh_chart import RefreshChart, tone
from tokenlife.web.dashboard.pages import h

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 180, 36, 20, 8


def chart_svg(chart: RefreshChart) -> str:
    minutes = max(1, len(chart.bars))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / minutes
    peak = max(1, chart.peak)
    parts = [
        f'<svg class="chart" id="refresh-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">Refreshes per minute over the last hour: {chart.total}</title>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" '
        f'y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for index, bar in enumerate(chart.bars):
        x = LEFT + index * step
        y = float(TOP + plot_h)
        label = iso8601(bar.minute * 60) or ""
        for outcome, count in bar.counts:
            height = plot_h * count / peak
            y -= height
            parts.append(
                f'<rect class="bar {tone(outcome)}" data-outcome="{h(outcome)}" '
                f'x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, step - 2):.1f}" '
                f'height="{height:.1f}"><title>{h(label[11:16])} UTC · {h(outcome)}: '
                f"{count}</title></rect>"
            )
        if index % 15 == 0 or index == minutes - 1:
            anchor = "end" if index == minutes - 1 else "start"
            at = x + step if index == minutes - 1 else x
            parts.append(
                f'<text class="tick" x="{at:.1f}" y="{HEIGHT - 4}" '
                f'text-anchor="{anchor}">{h(label[11:16])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def legend(chart: RefreshChart) -> str:
    if not chart.totals:
        return '<p class="muted" id="refresh-totals">No refreshes in the last hour.</p>'
    items = "".join(
        f'<li><span class="swatch {tone(o)}"></span>{h(o)} '
        f'<strong data-outcome="{h(o)}">{n}</strong></li>'
        for o, n in chart.totals
    )
    return f'<ul class="legend" id="refresh-totals">{items}</ul>'
