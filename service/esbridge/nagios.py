"""Render a :class:`~esbridge.result.Result` as Nagios / Icinga 2 plugin output.

This is the only formatter: the API's ``/nagios`` endpoint, ``esbridge run`` and the
``check_esbridge`` plugin emit exactly the text :func:`render` returns.

Layout (Monitoring Plugins Development Guidelines, "Plugin Output")::

    CRITICAL - 312 5xx responses on logs-web-* (critical > 50) | 'errors'=312;10;50;0
    CRITICAL: web-01: 300 5xx responses (critical > 50)
    WARNING: web-02: 12 5xx responses (warning > 10)
    OK: web-03: 0 5xx responses
    ... and 7 more groups not evaluated (max_groups 3) | 'web-01'=300;10;50;0 'web-02'=12;10;50;0

* Line 1 is ``f"{state.name} - {summary}"``, followed by `` | `` and the overall perfdata when
  there is any (no `` | `` otherwise).
* Then the long output, one line per entry: ``result.long_output`` when given, else one
  ``"<STATE>: <group summary>"`` line per group, non-OK groups first (worst first), then the
  OK groups. ``"... and N more groups not evaluated (max_groups M)"`` is appended whenever
  ``result.groups_omitted > 0`` (``M`` is ``result.max_groups`` when the evaluator
  put it there, else the number of groups present).
* The group perfdata (``result.groups[*].perfdata``, in group order) goes after a `` | `` on
  the **last** long-output line. In the rare case of group perfdata without any long-output
  line it is appended to the overall perfdata on line 1 instead (never a line starting with
  ``|``: Icinga 2 would keep an empty text line for it).
* :func:`render` returns **no trailing newline**. The plugin and ``esbridge run`` add exactly
  one ``\\n`` when printing; the HTTP API returns the text as is.

Why this layout parses the same in both cores (checked against real Nagios 4 and Icinga 2
by tests/test_real_nagios.py and tests/test_real_icinga.py):

* Nagios 4 (``base/utils.c: parse_check_output``): on line 1 the text before the first ``|``
  is the short output, the rest of the line perfdata. On later lines everything before the
  first ``|`` is long output, everything after it *and on all following lines* is perfdata.
  Because the group perfdata sits on the last line, nothing after it is mistaken for
  perfdata.
* Icinga 2 (``PluginUtility::ParseCheckOutput``) splits the output on ``\\r`` and ``\\n`` and,
  per line, treats the text after the first ``|`` as perfdata when an ``=`` follows it. Our
  text parts never contain ``|`` (replaced by ``¦`` U+00A6) and never contain ``\\r``, so
  only the two separators we emit are seen.
* Nagios 4 truncates plugin output at ``MAX_PLUGIN_OUTPUT_LENGTH`` (8192 bytes); we bound
  the UTF-8 encoded text to that ourselves so the cut is ours and readable.

Perfdata items are ``'label'=value[uom];[warn];[crit];[min];[max]``:

* Labels are always single-quoted (valid per the guidelines and what Icinga's developer
  guidelines recommend; simpler than deciding when quoting is required). ``'`` and ``=``
  in a label become ``_``, ``|`` becomes ``¦``, control characters become spaces; an empty
  label becomes ``_``. Labels are unique within one output: repeats get ``_2``, ``_3``...
* Values, min and max are plain C-locale decimals (:func:`format_number`). A value of
  ``None`` (or NaN/inf) renders as ``U`` without unit (``'x'=U;10;50``) - the ``;warn;crit``
  fields are kept. Icinga 2 passes ``U`` through (some writers log a warning for it).
* warn/crit are the range text (``str(range)``, e.g. ``10``, ``10:``, ``~:10``, ``@10:20``);
  trailing empty fields are trimmed (``'x'=5;10;50``; ``'x'=5;;50`` when warn is absent).
* The unit of measure is kept only when it is one of ``s ms us % B KB MB TB c``; anything
  else is dropped from perfdata (the summary text still names it).

Size bound, in priority order: the status line and overall perfdata are always kept (the
summary alone is cut with ``…`` only if it cannot fit otherwise); the "groups not evaluated"
line is always kept; then group perfdata items are dropped last-first, then long-output lines
are dropped from the end. When anything is dropped a note ``... (N more lines truncated)``
(``... (N more lines truncated, K perfdata items dropped)`` when perfdata went too) takes the
place of the dropped lines. Cuts never split a UTF-8 character.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from esbridge.errors import ErrorKind
from esbridge.numbers import format_number
from esbridge.result import GroupResult, Perfdatum, Result, State
from esbridge.staleness import stale

__all__ = [
    "ALLOWED_UOMS",
    "MAX_OUTPUT_BYTES",
    "exit_code",
    "format_number",
    "format_perfdatum",
    "render",
    "stale",
    "summary_value",
    "unknown",
]

MAX_OUTPUT_BYTES = 8192
"""Nagios 4 ``MAX_PLUGIN_OUTPUT_LENGTH``: the whole rendered text, UTF-8 encoded."""

ALLOWED_UOMS = frozenset({"", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"})
"""Units of measure the Monitoring Plugins guidelines define."""

ELLIPSIS = "…"
_BROKEN_BAR = "\u00a6"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_RANGE_TEXT = re.compile(r"^[-+0-9.:~@]*$")


# --------------------------------------------------------------------------- numbers


def summary_value(value: float | None, unit: str = "") -> str:
    """A measurement for human text: ``312``, ``99.5 %``, ``1.2 s``; ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    number = format_number(value)
    return f"{number} {unit}" if unit else number


# --------------------------------------------------------------------------- sanitising


def _clean_text(text: str) -> str:
    """Text for one output line: no ``|``, no ``;``, no control characters (tab kept).

    ``|`` would start perfdata in Nagios and Icinga 2. ``;`` is the field separator of
    Nagios's status and command files, and Nagios 4 rewrites it to ``:`` in plugin output:
    replacing it here keeps the text byte-identical in every tool.
    """
    return _CONTROL.sub(" ", text.replace("|", _BROKEN_BAR).replace(";", ","))


def _one_line(text: str) -> str:
    """Text that must stay on one line (the summary): line breaks become spaces."""
    return _clean_text(text.replace("\r\n", " ").replace("\n", " ").replace("\r", " "))


def _lines(text: str) -> list[str]:
    """One long-output entry may hold line breaks: split them into separate lines."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    return [_clean_text(line) for line in normalised.split("\n")]


def _clean_label(label: str) -> str:
    text = label.replace("'", "_").replace("=", "_").replace("|", _BROKEN_BAR)
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    return text or "_"


def _unique(label: str, seen: set[str]) -> str:
    if label not in seen:
        seen.add(label)
        return label
    n = 2
    while f"{label}_{n}" in seen:
        n += 1
    unique = f"{label}_{n}"
    seen.add(unique)
    return unique


# --------------------------------------------------------------------------- perfdata


def _range_text(value: object) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    return text if _RANGE_TEXT.match(text) else ""


def _limit_text(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return format_number(value)


def format_perfdatum(item: Perfdatum, label: str | None = None) -> str:
    """``'label'=value[uom];[warn];[crit];[min];[max]`` with trailing empty fields trimmed.

    ``label`` overrides ``item.label`` (already cleaned and made unique by :func:`render`).
    """
    name = _clean_label(item.label) if label is None else label
    if item.value is None or not math.isfinite(item.value):
        value = "U"
    else:
        uom = item.uom if item.uom in ALLOWED_UOMS else ""
        value = format_number(item.value) + uom
    fields = [
        value,
        _range_text(item.warn),
        _range_text(item.crit),
        _limit_text(item.min),
        _limit_text(item.max),
    ]
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return f"'{name}'=" + ";".join(fields)


def format_perfdata(
    items: tuple[Perfdatum, ...] | list[Perfdatum], seen: set[str] | None = None
) -> list[str]:
    """Perfdata items with clean, unique labels (``seen`` carries labels across calls)."""
    seen = set() if seen is None else seen
    return [format_perfdatum(item, _unique(_clean_label(item.label), seen)) for item in items]


# --------------------------------------------------------------------------- render


def _group_lines(groups: tuple[GroupResult, ...]) -> list[str]:
    ordered = sorted(groups, key=lambda g: (g.state is State.OK, -g.state.severity))
    lines: list[str] = []
    for group in ordered:
        # One line per group, whatever the group's values hold: a newline in a field value
        # must not split the long output (or forge a line of it).
        lines.append(_one_line(f"{group.state.name}: {group.summary}"))
    return lines


def _omitted_line(result: Result) -> str | None:
    if result.groups_omitted <= 0:
        return None
    max_groups = result.max_groups or len(result.groups)
    return f"... and {result.groups_omitted} more groups not evaluated (max_groups {max_groups})"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, max_bytes: int) -> str:
    """``text`` shortened to ``max_bytes`` UTF-8 bytes, ending in ``…`` when cut."""
    if _size(text) <= max_bytes:
        return text
    room = max_bytes - _size(ELLIPSIS)
    if room <= 0:
        return ""
    return text.encode("utf-8")[:room].decode("utf-8", errors="ignore") + ELLIPSIS


def _note(dropped_lines: int, dropped_perf: int) -> str:
    if dropped_perf:
        return f"... ({dropped_lines} more lines truncated, {dropped_perf} perfdata items dropped)"
    return f"... ({dropped_lines} more lines truncated)"


def render(result: Result, max_bytes: int = MAX_OUTPUT_BYTES) -> str:
    """The plugin output for ``result`` (see the module docstring); no trailing newline."""
    return rendered(result, max_bytes)[1]


def rendered(result: Result, max_bytes: int = MAX_OUTPUT_BYTES) -> tuple[Result, str]:
    """(result shown, text): a result that cannot be rendered is shown as UNKNOWN.

    Callers that also send the exit code use the returned result's state, so the code and
    the text always agree. One odd result never breaks the page of another check.
    """
    try:
        return result, _render(result, max_bytes)
    except Exception as exc:
        reason = f"could not render the result: {type(exc).__name__}: {str(exc)[:200]}"
        shown = unknown(result.check, reason, "internal", result.evaluated_at)
        return shown, _render(shown, max_bytes)


def _render(result: Result, max_bytes: int) -> str:
    seen: set[str] = set()
    overall = format_perfdata(result.perfdata, seen)
    group_perf = format_perfdata([p for g in result.groups for p in g.perfdata], seen)

    if result.long_output:
        lines = [line for entry in result.long_output for line in _lines(entry)]
    else:
        lines = _group_lines(result.groups)
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines would end the output in a newline
    omitted = _omitted_line(result)
    tail = [omitted] if omitted else []

    if not lines and not tail and group_perf:
        overall, group_perf = overall + group_perf, []

    prefix = f"{result.state.name} - "
    summary = _one_line(result.summary)
    overall_text = f" | {' '.join(overall)}" if overall else ""

    # Room the mandatory parts need besides the summary: the overall perfdata, the
    # "groups not evaluated" line, and the worst-case truncation note.
    worst_note = _note(len(lines), len(group_perf)) if (lines or group_perf) else ""
    reserved = sum(_size("\n" + line) for line in [*tail, worst_note] if line)
    budget = max_bytes - reserved - _size(prefix)
    while overall and _size(overall_text) > budget - _size(ELLIPSIS) - 1:
        overall.pop()  # pathological: overall perfdata alone is too big
        overall_text = f" | {' '.join(overall)}" if overall else ""
    head = prefix + _cut(summary, budget - _size(overall_text)) + overall_text

    def build(n_lines: int, n_perf: int) -> str:
        body = lines[:n_lines]
        dropped_lines, dropped_perf = len(lines) - n_lines, len(group_perf) - n_perf
        if dropped_lines or dropped_perf:
            body.append(_note(dropped_lines, dropped_perf))
        body.extend(tail)
        if n_perf:
            body[-1] += " | " + " ".join(group_perf[:n_perf])
        return "\n".join([head, *body])

    def fits(text: str) -> bool:
        return _size(text) <= max_bytes

    full = build(len(lines), len(group_perf))
    if fits(full):
        return full
    # Drop group perfdata last-first, then long-output lines from the end.
    n_perf = _largest(len(group_perf), lambda n: fits(build(len(lines), n)))
    if n_perf > 0:
        return build(len(lines), n_perf)
    n_lines = _largest(len(lines), lambda n: fits(build(n, 0)))
    text = build(n_lines, 0)
    if not fits(text):  # cannot happen (room was reserved); stay within the bound anyway
        text = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    return text


def _largest(upper: int, ok: Callable[[int], bool]) -> int:
    """The largest ``n`` in ``0..upper`` with ``ok(n)`` (``ok`` is monotone enough); 0 if none."""
    lo, hi, best = 1, upper, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


# --------------------------------------------------------------------------- results


def exit_code(result: Result) -> int:
    """The plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    return int(result.state)


def unknown(check: str, reason: str, kind: ErrorKind | str, now: float) -> Result:
    """An UNKNOWN result for a failure (``kind`` is one of the ``ErrorKind`` values)."""
    return Result(
        check=check,
        state=State.UNKNOWN,
        summary=reason,
        error=reason,
        error_kind=ErrorKind(kind),
        evaluated_at=now,
    )
