"""The terminal view of a preview: a compact chart, the transitions, time per state, pages.

Plain text that reads the same in a terminal, a ticket or a chat: the value as columns of
block characters, the warning and critical thresholds as labelled lines, one state letter
per column under the chart (``.`` OK, ``W``, ``C``, ``?`` UNKNOWN), then the facts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from esbridge.durations import format_duration
from esbridge.nagios import format_number
from esbridge.preview import Preview, PreviewPoint
from esbridge.ranges import Range
from esbridge.result import State

STATE_MARK = {State.OK: ".", State.WARNING: "W", State.CRITICAL: "C", State.UNKNOWN: "?"}
LEVELS = " ▁▂▃▄▅▆▇█"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _hm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    shown = format_number(round(value, 2) if abs(value) < 100 else round(value, 1))
    return f"{shown} {unit}".rstrip() if unit and unit != "c" else shown


def _columns(points: list[PreviewPoint], width: int) -> list[list[PreviewPoint]]:
    """Points grouped into at most ``width`` columns, in time order."""
    count = len(points)
    if count <= width:
        return [[p] for p in points]
    return [points[i * count // width : (i + 1) * count // width] for i in range(width)]


def _column_point(points: list[PreviewPoint]) -> PreviewPoint:
    """The worst point of a column (most severe state, then largest value): nothing hides."""
    return max(
        points,
        key=lambda p: (p.state.severity, p.value if p.value is not None else -math.inf),
    )


def _threshold_values(rng: Range | None) -> list[float]:
    if rng is None:
        return []
    return [v for v in (rng.start, rng.end) if math.isfinite(v) and not (v == 0 and not rng.inside)]


def chart(preview: Preview, width: int = 72, height: int = 8) -> list[str]:
    """The value over time with the threshold lines; one column per point (or per few)."""
    check = preview.check
    columns = [_column_point(c) for c in _columns(preview.points, width)]
    values = [p.value for p in columns if p.value is not None]
    lines_at = {
        "critical": _threshold_values(check.critical),
        "warning": _threshold_values(check.warning),
    }
    marks = [v for vs in lines_at.values() for v in vs]
    lo = min([0.0, *values, *marks])
    hi = max([*values, *marks, lo + 1.0])
    span = hi - lo
    body: list[tuple[str, str]] = []
    for row in range(height, 0, -1):
        top = lo + span * row / height
        bottom = lo + span * (row - 1) / height
        cells = []
        for point in columns:
            v = point.value
            if v is None:
                cells.append(" ")
            elif v >= top:
                cells.append(LEVELS[-1])
            elif v > bottom:
                cells.append(LEVELS[max(1, round((v - bottom) / (top - bottom) * 8))])
            else:
                cells.append(" ")
        label = ""
        for name, vs in lines_at.items():
            for v in vs:
                if bottom < v <= top or (row == 1 and v == lo):
                    cells = [c if c != " " else "─" for c in cells]
                    label = label or f" {name} {format_number(v)}"
        axis = ""
        if row == height:
            axis = format_number(round(hi, 2))
        elif row == 1:
            axis = format_number(round(lo, 2))
        body.append((axis, f"┤{''.join(cells)}{label}"))
    label_width = max(len(axis) for axis, _ in body)
    rows = [f"{axis:>{label_width}} {line}" for axis, line in body]
    rows.append(f"{'':>{label_width}}  {''.join(STATE_MARK[p.state] for p in columns)}  state")
    first, last = preview.points[0].at, preview.points[-1].at
    span_cols = len(columns)
    left, right = _hm(first), _hm(last)
    gap = max(1, span_cols - len(left) - len(right))
    rows.append(f"{'':>{label_width}}  {left}{' ' * gap}{right} UTC")
    return rows


def render_text(preview: Preview, width: int = 72) -> str:
    """The whole terminal report."""
    check = preview.check
    points = preview.points
    unit = check.unit
    head = (
        f"{check.name} ({check.kind}, window {format_duration(check.window)}, "
        f"{check.thresholds_text}) over the last {format_duration(preview.since)} "
        f"to {_when(preview.until)}: {len(points)} points every "
        f"{format_duration(preview.step)}"
    )
    method = (
        f"{preview.requests} request{'s' if preview.requests != 1 else ''} "
        f"to Elasticsearch ({preview.method}"
        + (f", {preview.searches} searches" if preview.searches > 1 else "")
        + ")"
    )
    out = [head, method]
    out.extend(f"note: {n}" for n in preview.notes)
    out.append("")
    out.extend(chart(preview, width))
    out.append("")
    transitions = preview.transitions
    out.append(f"starts {points[0].state.name} ({_value(points[0].value, unit)})")
    if transitions:
        out.append(f"transitions ({len(transitions)}):")
        shown = transitions[:20]
        for point, before in shown:
            out.append(
                f"  {_when(point.at)}  {before.name} -> {point.state.name}  "
                f"{_value(point.value, unit)}: {point.result.summary}"
            )
        if len(transitions) > len(shown):
            out.append(f"  ... and {len(transitions) - len(shown)} more (--format json has all)")
    else:
        out.append("no transitions: the state never changed")
    total = sum(preview.time_in_state().values()) or 1.0
    parts = [
        f"{name} {format_duration_seconds(sec)} ({100 * sec / total:.1f} %)"
        for name, sec in preview.time_in_state().items()
        if sec
    ]
    out.append("time in state: " + ", ".join(parts))
    pages = preview.pages()
    out.append(
        f"would have paged {pages} time{'s' if pages != 1 else ''} (transitions into CRITICAL)"
        f" and warned {preview.warnings()} time{'s' if preview.warnings() != 1 else ''}"
        " (OK -> WARNING)"
    )
    if check.group_by:
        worst = preview.worst_groups(5)
        if worst:
            out.append("worst groups (time not OK, worst state):")
            out.extend(
                f"  {g['group']}: {format_duration_seconds(g['seconds_not_ok'])}, {g['worst']}"
                for g in worst
            )
        else:
            out.append("every group stayed OK")
    last = points[-1]
    out.append(f"now ({_when(last.at)}): {last.state.name} - {last.result.summary}")
    return "\n".join(out)


def format_duration_seconds(seconds: float) -> str:
    """``1h 25m`` for spans of time (not a check duration: several units)."""
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else ""]
    parts += [f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return " ".join(p for p in parts if p) or "0s"
