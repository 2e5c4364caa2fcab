"""Charts as inline SVG: pure functions from numbers to markup, no script, no library.

Every chart is a complete ``<svg>`` with a ``<title>`` (screen readers, and the tooltip of the
whole chart) and one ``<title>`` per bar or point, so a reader hovering sees the exact value.
Labels come from the manifest and the API and are escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT = 520, 190
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 28  # plot margins
COLOURS = {"done": "#2f7d4f", "failed": "#c2402a", "bytes": "#3566a8", "line": "#6b4fa3"}
MUTED = "#8a8a8a"


def nice_ceiling(value: float) -> float:
    """The axis top: the value rounded up to 1, 2 or 5 times a power of ten (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def human_bytes(value: float) -> str:
    """``1.5 MB``: decimal units, as disks are sold."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def plain_number(value: float) -> str:
    """``12``, ``1.5``, ``12k``, ``3.4M``: short axis labels."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def _frame(title: str, body: list[str], width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _axis(top: float, fmt: Callable[[float], str], width: int, height: int) -> list[str]:
    """Horizontal grid lines at 0, half and the top, labelled on the left."""
    parts: list[str] = []
    plot = height - TOP - BOTTOM
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{escape(fmt(top * fraction))}</text>'
        )
    return parts


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    *,
    fmt: Callable[[float], str] = plain_number,
) -> str:
    """Stacked bars, one per label: ``[(label, [(series, value), ...]), ...]``, left to right.

    Series are coloured by name (``done``, ``failed``, ``bytes``; others in the line colour).
    """
    top = nice_ceiling(max((sum(v for _, v in stack) for _, stack in bars), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _axis(top, fmt, WIDTH, HEIGHT)
    slot = plot_w / max(len(bars), 1)
    bar_w = max(1.0, min(36.0, slot * 0.7))
    every = max(1, math.ceil(len(bars) / 16))  # at most ~16 labels under the axis
    for i, (label, stack) in enumerate(bars):
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = float(TOP + plot_h)
        for series, value in stack:
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            colour = COLOURS.get(series, COLOURS["line"])
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(f"{label}: {fmt(value)} {series}")}</title>'
                "</rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
                f'font-size="11" fill="{MUTED}">{escape(label)}</text>'
            )
    return _frame(title, parts)


def hbar_chart(title: str, rows: Sequence[tuple[str, float]], *, colour: str = "failed") -> str:
    """Horizontal bars with their labels, largest first: failures by reason."""
    ordered = sorted(rows, key=lambda row: (-row[1], row[0]))
    row_h, label_w = 22, 200
    height = TOP + row_h * max(len(ordered), 1) + 8
    top = max((value for _, value in ordered), default=0) or 1
    plot_w = WIDTH - label_w - RIGHT - 48
    parts: list[str] = []
    if not ordered:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{TOP + 12}" text-anchor="middle" font-size="12" '
            f'fill="{MUTED}">none</text>'
        )
    for i, (label, value) in enumerate(ordered):
        y = TOP + i * row_h
        w = max(1.0, plot_w * value / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="#333">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{COLOURS.get(colour, colour)}"><title>{escape(f"{label}: {value:g}")}</title>'
            f'</rect><text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12" '
            f'fill="{MUTED}">{escape(plain_number(value))}</text>'
        )
    return _frame(title, parts, WIDTH, height)


def line_chart(
    title: str,
    points: Sequence[tuple[float, float]],
    *,
    fmt: Callable[[float], str] = plain_number,
    x_label: str = "s",
    colour: str = "line",
) -> str:
    """A line through ``(x, y)`` points (x ascending), with the area under it shaded."""
    top = nice_ceiling(max((y for _, y in points), default=0))
    right = max((x for x, _ in points), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _axis(top, fmt, WIDTH, HEIGHT)
    stroke = COLOURS.get(colour, colour)
    xy = [(LEFT + plot_w * x / right, TOP + plot_h * (1 - y / top)) for x, y in points]
    if xy:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        base = TOP + plot_h
        parts.append(
            f'<polygon points="{xy[0][0]:.1f},{base:.1f} {path} {xy[-1][0]:.1f},{base:.1f}" '
            f'fill="{stroke}" fill-opacity="0.15"/>'
            f'<polyline points="{path}" fill="none" stroke="{stroke}" stroke-width="2"/>'
        )
        for (x, y), (px, py) in zip(points, xy, strict=True):
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{stroke}">'
                f"<title>{escape(f'{plain_number(x)} {x_label}: {fmt(y)}')}</title></circle>"
            )
    for fraction in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{LEFT + plot_w * fraction:.1f}" y="{HEIGHT - 10}" text-anchor="middle" '
            f'font-size="11" fill="{MUTED}">{escape(plain_number(right * fraction))} '
            f"{escape(x_label)}</text>"
        )
    return _frame(title, parts)


def rates(timeline: Sequence[tuple[float, int, int]]) -> list[tuple[float, float, float]]:
    """Per interval of a report's timeline: (end seconds, items/s, bytes/s), from 0."""
    result: list[tuple[float, float, float]] = []
    last = (0.0, 0, 0)
    for seconds, done, nbytes in timeline:
        span = seconds - last[0]
        if span > 0:
            result.append((seconds, (done - last[1]) / span, (nbytes - last[2]) / span))
        last = (seconds, done, nbytes)
    return result
