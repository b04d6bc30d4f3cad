"""Evaluation: an Elasticsearch answer becomes a measurement, thresholds make it a state.

Pure functions, no I/O: ``evaluate(check, answer, now)`` gets the response (or the
:class:`~esbridge.esclient.ESError` that replaced it) and returns a :class:`Result` with a
summary written for a person woken at night: what was measured, the value, the threshold
crossed, the window and the index.

Honesty rules: a failed or partial answer is UNKNOWN with the reason, never a number; a
missing value follows the check's ``no_data`` policy; groups beyond ``max_groups`` are counted
in the result, never dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from esbridge.durations import format_duration
from esbridge.errors import ESError
from esbridge.models import (
    ChangeCheck,
    CheckDefinition,
    ClusterHealthCheck,
    CountCheck,
    DiskCheck,
    FreshnessCheck,
    JvmHeapCheck,
    MasterCheck,
    MetricCheck,
    NodesCheck,
    RatioCheck,
    UnassignedShardsCheck,
)
from esbridge.nagios import format_number
from esbridge.planner import GROUP_COUNT_AGG, GROUPS_AGG, MULTI_GROUP_FETCH, VALUE_AGG
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result, State

PERFDATA_UOMS = frozenset({"", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"})


def classify(value: float | None, warning: Range | None, critical: Range | None) -> State:
    """Critical is evaluated before warning, as the guidelines say."""
    if value is None or math.isnan(value):
        return State.UNKNOWN
    if critical is not None and critical.alerts(value):
        return State.CRITICAL
    if warning is not None and warning.alerts(value):
        return State.WARNING
    return State.OK


def threshold_note(
    state: State, value: float | None, warning: Range | None, critical: Range | None
) -> str:
    """``critical > 50`` for the crossed threshold, or both thresholds when OK."""
    if state is State.CRITICAL and critical is not None:
        return f"critical {critical.describe(value)}"
    if state is State.WARNING and warning is not None:
        return f"warning {warning.describe(value)}"
    parts = []
    if warning is not None:
        parts.append(f"warning {warning.describe()}")
    if critical is not None:
        parts.append(f"critical {critical.describe()}")
    return ", ".join(parts)


def evaluate(
    check: CheckDefinition,
    answer: dict[str, Any] | ESError,
    now: float,
    duration: float = 0.0,
) -> Result:
    """Turn the answer to ``check``'s request into a :class:`Result`."""
    if isinstance(answer, ESError):
        return error_result(check, answer.kind, answer.message, now, duration)
    problem = _partial_problem(answer)
    if problem is not None:
        return error_result(check, "partial", problem, now, duration)
    try:
        result = _EVALUATORS[type(check)](check, answer, now)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return error_result(
            check,
            "internal",
            f"could not read Elasticsearch's answer: {type(exc).__name__}: {exc}",
            now,
            duration,
        )
    # The result was just built for this call and is not shared yet: set the two fields in
    # place instead of copying it (``dataclasses.replace`` was a tenth of the evaluation cost).
    object.__setattr__(result, "evaluated_at", now)
    object.__setattr__(result, "duration", duration)
    return result


def error_result(
    check: CheckDefinition, kind: str, reason: str, now: float, duration: float = 0.0
) -> Result:
    """UNKNOWN with the reason: what every failure becomes."""
    return Result(
        check=check.name,
        state=State.UNKNOWN,
        summary=f"{reason} ({_where(check)})" if check.index else reason,
        unit=check.unit,
        error=reason,
        error_kind=kind,
        evaluated_at=now,
        duration=duration,
        perfdata=(Perfdatum(_label(check), None, _uom(check.unit), check.warning, check.critical),),
    )


# -- data kinds ---------------------------------------------------------------------------


def _count(check: CountCheck, answer: dict[str, Any], now: float) -> Result:
    total = float(_total(answer))
    # ``c`` is the perfdata "counter" unit, not a word: "312 c" would puzzle anyone.
    noun = check.unit if check.unit not in ("", "c") else "matching documents"
    if check.group_by:
        return _grouped_result(
            check,
            answer,
            value_of=lambda bucket: float(bucket["doc_count"]),
            describe=lambda v: f"{format_number(v)} {noun}",
            headline=f"{format_number(total)} {noun} in all groups",
            perf_min=0.0,
        )
    state = classify(total, check.warning, check.critical)
    summary = (
        f"{format_number(total)} {noun} in last {_window(check)} on {_index(check)}"
        f" ({threshold_note(state, total, check.warning, check.critical)})"
    )
    return _single(check, state, summary, total, perf_min=0.0)


def _metric(check: MetricCheck, answer: dict[str, Any], now: float) -> Result:
    what = f"{_agg_name(check.agg, check.percentile)} of {check.field}"
    if check.group_by:
        return _grouped_result(
            check,
            answer,
            value_of=lambda bucket: _metric_value(
                bucket.get(VALUE_AGG), check.agg, check.percentile
            ),
            describe=lambda v: f"{what} {_with_unit(v, check.unit)}",
            headline=f"{what} per {', '.join(check.group_by)}",
        )
    value = _metric_value(
        (answer.get("aggregations") or {}).get(VALUE_AGG), check.agg, check.percentile
    )
    if value is None or _total(answer) == 0:
        return _no_data(
            check, f"no {check.field} values in last {_window(check)} on {_index(check)}"
        )
    state = classify(value, check.warning, check.critical)
    summary = (
        f"{what} is {_with_unit(value, check.unit)} in last {_window(check)} on {_index(check)}"
        f" ({threshold_note(state, value, check.warning, check.critical)})"
    )
    return _single(check, state, summary, value)


def _ratio_value(node: dict[str, Any], total: float) -> tuple[float | None, float, float]:
    numerator = float(node["numerator"]["doc_count"])
    denominator = float(node["denominator"]["doc_count"]) if "denominator" in node else total
    if denominator == 0:
        return None, numerator, denominator
    return 100.0 * numerator / denominator, numerator, denominator


def _ratio(check: RatioCheck, answer: dict[str, Any], now: float) -> Result:
    unit = check.unit or "%"
    if check.group_by:
        return _grouped_result(
            check,
            answer,
            value_of=lambda b: _ratio_value(b, float(b["doc_count"]))[0],
            describe=lambda v: f"ratio {_with_unit(v, unit)}",
            headline="ratio per " + ", ".join(check.group_by),
            perf_min=0.0,
            perf_max=100.0,
        )
    aggs = answer.get("aggregations") or {}
    value, numerator, denominator = _ratio_value(aggs, float(_total(answer)))
    if value is None:
        return _no_data(
            check,
            "no matching documents for the denominator (0 of 0)"
            f" in last {_window(check)} on {_index(check)}",
        )
    state = classify(value, check.warning, check.critical)
    note = threshold_note(state, value, check.warning, check.critical)
    summary = (
        f"ratio {_with_unit(value, unit)} ({format_number(numerator)} of"
        f" {format_number(denominator)} documents) in last {_window(check)} on {_index(check)}"
        f" ({note})"
    )
    extra = (
        Perfdatum("numerator", numerator, "", None, None, 0.0),
        Perfdatum("denominator", denominator, "", None, None, 0.0),
    )
    return _single(check, state, summary, value, perf_min=0.0, perf_max=100.0, extra_perf=extra)


def _change(check: ChangeCheck, answer: dict[str, Any], now: float) -> Result:
    aggs = answer.get("aggregations") or {}
    metric = bool(check.field and check.agg)
    what = f"{_agg_name(check.agg, check.percentile)} of {check.field}" if metric else "count"

    def side(name: str) -> float | None:
        node = aggs[name]
        if metric:
            return _metric_value(node.get(VALUE_AGG), check.agg or "", check.percentile)
        return float(node["doc_count"])

    current, previous = side("current"), side("previous")
    span = _window(check)
    perf = (
        Perfdatum("current", current, "", None, None),
        Perfdatum("previous", previous, "", None, None),
    )
    if current is not None and previous is not None and current == 0 and previous == 0:
        value: float | None = 0.0
    elif previous is None or previous == 0 or current is None:
        return _no_data(
            check,
            f"{what} was {_maybe(previous)} in the previous {span} and is {_maybe(current)} now"
            f" on {_index(check)}: a change from zero is undefined",
            extra_perf=perf,
        )
    else:
        value = 100.0 * (current - previous) / abs(previous)
    state = classify(value, check.warning, check.critical)
    sign = "+" if value > 0 else ""
    note = threshold_note(state, value, check.warning, check.critical)
    summary = (
        f"{what} changed {sign}{_with_unit(value, '%')} ({_maybe(previous)} in the previous"
        f" {span} -> {_maybe(current)} in the last {span}) on {_index(check)} ({note})"
    )
    return _single(check, state, summary, value, unit="%", extra_perf=perf)


def _freshness(check: FreshnessCheck, answer: dict[str, Any], now: float) -> Result:
    def age(node: dict[str, Any] | None) -> float | None:
        newest = (node or {}).get("value")
        if newest is None:
            return None
        return max(0.0, now - float(newest) / 1000.0)

    unit = check.unit or "s"
    if check.group_by:
        return _grouped_result(
            check,
            answer,
            value_of=lambda b: age(b.get(VALUE_AGG)),
            describe=lambda v: f"newest document {_age_text(v, unit)} old",
            headline="age of the newest document per " + ", ".join(check.group_by),
            perf_min=0.0,
        )
    value = age((answer.get("aggregations") or {}).get(VALUE_AGG))
    if value is None:
        return _no_data(
            check, f"no matching document in the last {_window(check)} on {_index(check)}"
        )
    state = classify(value, check.warning, check.critical)
    newest = datetime.fromtimestamp(now - value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    summary = (
        f"newest document is {_age_text(value, unit)} old ({newest}) on {_index(check)}"
        f" ({threshold_note(state, value, check.warning, check.critical)})"
    )
    return _single(check, state, summary, round(value, 3), unit=unit, perf_min=0.0)


# -- cluster kinds ------------------------------------------------------------------------

_HEALTH_STATE = {"green": State.OK, "yellow": State.WARNING, "red": State.CRITICAL}


def _health(check: ClusterHealthCheck, answer: dict[str, Any], now: float) -> Result:
    status = str(answer.get("status", "unknown"))
    state = _HEALTH_STATE.get(status, State.UNKNOWN)
    scope = f" for {_index(check)}" if check.index else ""
    nodes = _plural(int(answer.get("number_of_nodes", 0)), "node")
    summary = (
        f"cluster {answer.get('cluster_name', '?')} is {status}{scope}: {nodes}, "
        f"{answer.get('active_shards', 0)} active shards, "
        f"{answer.get('relocating_shards', 0)} relocating, "
        f"{answer.get('initializing_shards', 0)} initializing, "
        f"{answer.get('unassigned_shards', 0)} unassigned"
    )
    perf = tuple(
        Perfdatum(key, float(answer.get(key, 0)), "", None, None, 0.0)
        for key in (
            "active_shards",
            "relocating_shards",
            "initializing_shards",
            "unassigned_shards",
        )
    )
    return Result(
        check=check.name, state=state, summary=summary, value=float(int(state)), perfdata=perf
    )


def _nodes(check: NodesCheck, answer: dict[str, Any], now: float) -> Result:
    nodes = int(answer.get("number_of_nodes", 0))
    data = int(answer.get("number_of_data_nodes", 0))
    problems = []
    if nodes < check.expected_nodes:
        problems.append(f"{nodes} of {check.expected_nodes} expected nodes")
    if check.expected_data_nodes is not None and data < check.expected_data_nodes:
        problems.append(f"{data} of {check.expected_data_nodes} expected data nodes")
    if problems:
        state = State.CRITICAL
        summary = "missing nodes: " + ", ".join(problems)
    elif nodes > check.expected_nodes:
        # More nodes than planned is a surprise worth a look (a stray node joined).
        state = State.WARNING
        summary = (
            f"{_plural(nodes, 'node')} ({data} data), more than the {check.expected_nodes} expected"
        )
    else:
        state = classify(float(nodes), check.warning, check.critical)
        summary = f"{_plural(nodes, 'node')} ({data} data), {check.expected_nodes} expected"
    perf = (
        Perfdatum("nodes", float(nodes), "", None, Range.parse(f"{check.expected_nodes}:"), 0.0),
        Perfdatum(
            "data_nodes",
            float(data),
            "",
            None,
            Range.parse(f"{check.expected_data_nodes}:")
            if check.expected_data_nodes is not None
            else None,
            0.0,
        ),
    )
    return Result(check=check.name, state=state, summary=summary, value=float(nodes), perfdata=perf)


def _unassigned(check: UnassignedShardsCheck, answer: dict[str, Any], now: float) -> Result:
    # The original nagios-elasticsearch plugin compared this value with itself and never
    # alerted; here it is compared with the configured thresholds.
    value = float(answer.get("unassigned_shards", 0))
    state = classify(value, check.warning, check.critical)
    summary = (
        f"{format_number(value)} unassigned shards in cluster {answer.get('cluster_name', '?')}"
        f" ({threshold_note(state, value, check.warning, check.critical)})"
    )
    return _single(check, state, summary, value, perf_min=0.0)


def _per_node(check: JvmHeapCheck | DiskCheck, answer: dict[str, Any], measure: str) -> Result:
    groups: list[GroupResult] = []
    for node in (answer.get("nodes") or {}).values():
        name = str(node.get("name", "?"))
        if measure == "heap":
            value = (node.get("jvm") or {}).get("mem", {}).get("heap_used_percent")
        else:
            total = (node.get("fs") or {}).get("total", {})
            size, free = total.get("total_in_bytes"), total.get("available_in_bytes")
            value = 100.0 * (size - free) / size if size else None
        value = float(value) if value is not None else None
        state = (
            classify(value, check.warning, check.critical)
            if value is not None
            else check.effective_no_data
        )
        text = "heap used" if measure == "heap" else "disk used"
        summary = f"{name}: {text} {_with_unit(value, '%')}" + (
            f" ({threshold_note(state, value, check.warning, check.critical)})"
            if value is not None
            else ""
        )
        groups.append(
            GroupResult(
                key=(("node", name),),
                state=state,
                value=value,
                summary=summary,
                perfdata=(
                    Perfdatum(
                        f"{name}_{measure}", value, "%", check.warning, check.critical, 0.0, 100.0
                    ),
                ),
            )
        )
    groups.sort(key=lambda g: (-g.state.severity, -(g.value or 0)))
    label = "heap used" if measure == "heap" else "disk used"
    return _combine_groups(check, groups, 0, f"{label} per node", "%", noun="nodes")


def _jvm(check: JvmHeapCheck, answer: dict[str, Any], now: float) -> Result:
    return _per_node(check, answer, "heap")


def _disk(check: DiskCheck, answer: dict[str, Any], now: float) -> Result:
    return _per_node(check, answer, "disk")


def _master(check: MasterCheck, answer: dict[str, Any], now: float) -> Result:
    masters: dict[str, Any] = answer.get("masters") or {}
    failed = {url: m for url, m in masters.items() if isinstance(m, ESError)}
    named = {url: m for url, m in masters.items() if not isinstance(m, ESError)}
    distinct = sorted(set(named.values()))
    long_output = tuple(
        f"{url}: {'error: ' + str(m) if isinstance(m, ESError) else 'master is ' + str(m)}"
        for url, m in masters.items()
    )
    if len(distinct) > 1:
        state = State.CRITICAL
        summary = "split brain: nodes disagree on the elected master: " + ", ".join(
            f"{url} -> {m}" for url, m in named.items()
        )
    elif "none" in distinct:
        state, summary = (
            State.CRITICAL,
            "no elected master: " + ", ".join(u for u, m in named.items() if m == "none"),
        )
    elif failed:
        state = State.UNKNOWN
        summary = (
            f"could not ask {len(failed)} of {len(masters)} nodes for their master: "
            + ", ".join(f"{url}: {err}" for url, err in failed.items())
        )
    elif distinct:
        state, summary = (
            State.OK,
            f"{_plural(len(named), 'node')} asked, all agree: the elected master is {distinct[0]}",
        )
    else:
        state, summary = State.UNKNOWN, "no node URLs to ask"
    return Result(
        check=check.name,
        state=state,
        summary=summary,
        value=float(len(distinct)),
        long_output=long_output,
        perfdata=(
            Perfdatum("masters_seen", float(len(distinct)), "", None, Range.parse("1"), 0.0),
        ),
    )


# -- shared pieces ------------------------------------------------------------------------


def _grouped_result(
    check: CheckDefinition,
    answer: dict[str, Any],
    value_of: Any,
    describe: Any,
    headline: str,
    perf_min: float | None = None,
    perf_max: float | None = None,
) -> Result:
    aggs = answer.get("aggregations") or {}
    buckets = (aggs.get(GROUPS_AGG) or {}).get("buckets", [])
    fields = list(check.group_by)
    groups: list[GroupResult] = []
    warning, critical, uom = check.warning, check.critical, _uom(check.unit)
    # The OK note names both thresholds and not the value: the same for every OK group.
    ok_note = f" ({threshold_note(State.OK, None, warning, critical)})"
    for bucket in buckets:
        key = bucket["key"]
        if isinstance(key, dict):  # composite: {"service": "api", "host": "web-01"}
            values = [key.get(f) for f in fields]
        else:
            values = key if isinstance(key, list) else [key]
        key_pairs = tuple(
            (f, _key_text(v, bucket, len(values))) for f, v in zip(fields, values, strict=False)
        )
        value = value_of(bucket)
        if value is None:
            state = check.effective_no_data
            text = "no data"
        else:
            state = classify(value, warning, critical)
            note = (
                ok_note
                if state is State.OK
                else f" ({threshold_note(state, value, warning, critical)})"
            )
            text = describe(value) + note
        label = "/".join(v for _, v in key_pairs)
        groups.append(
            GroupResult(
                key=key_pairs,
                state=state,
                value=value,
                summary=f"{label}: {text}",
                perfdata=(Perfdatum(label, value, uom, warning, critical, perf_min, perf_max),),
            )
        )
    omitted = _omitted(aggs, len(buckets))
    groups.sort(key=_worst_first(check))
    if len(groups) > check.max_groups:
        # Several group_by fields: every combination was fetched (composite), keep the
        # max_groups worst; the rest is counted, never silently dropped.
        omitted += len(groups) - check.max_groups
        groups = groups[: check.max_groups]
    return _combine_groups(check, groups, omitted, headline, check.unit)


def _worst_first(check: CheckDefinition) -> Any:
    """Sort key: most severe state first, then the value furthest on the alerting side."""
    ranges = [r for r in (check.critical, check.warning) if r is not None]
    low_is_bad = bool(ranges) and all(
        r.end == math.inf and not r.inside and r.start != -math.inf for r in ranges
    )

    def key(group: GroupResult) -> tuple[int, int, float]:
        value = group.value
        if value is None:
            return (-group.state.severity, 1, 0.0)
        return (-group.state.severity, 0, value if low_is_bad else -value)

    return key


def _combine_groups(
    check: CheckDefinition,
    groups: list[GroupResult],
    omitted: int,
    headline: str,
    unit: str,
    noun: str = "groups",
) -> Result:
    # Cluster kinds accept an index only to share defaults: it says nothing about them.
    data_kind = not isinstance(check, JvmHeapCheck | DiskCheck)
    where = f" in last {_window(check)} on {_index(check)}" if check.index and data_kind else ""
    if not groups:
        state = check.effective_no_data if not isinstance(check, CountCheck) else State.OK
        return Result(
            check=check.name,
            state=state,
            summary=f"no groups: no matching documents{where}",
            unit=unit,
            error_kind="no_data" if state is not State.OK else None,
        )
    state = State.worst(g.state for g in groups)
    bad = [g for g in groups if g.state is not State.OK]
    shown = bad[:5]
    if bad:
        names = ", ".join(f"{g.label} {g.state.name} ({_with_unit(g.value, unit)})" for g in shown)
        more = f" and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
        summary = f"{len(bad)} of {len(groups)} {noun} not OK: {names}{more} - {headline}{where}"
    else:
        summary = f"all {len(groups)} {noun} OK - {headline}{where}"
    note = threshold_note(
        state if bad else State.OK, groups[0].value, check.warning, check.critical
    )
    if note:
        summary += f" ({note})"
    if omitted:
        summary += f", {omitted} more {noun} not evaluated (max_groups {check.max_groups})"
    return Result(
        check=check.name,
        state=state,
        summary=summary,
        value=groups[0].value,
        unit=unit,
        groups=tuple(groups),
        groups_omitted=omitted,
        extra={"max_groups": check.max_groups},
    )


def _omitted(aggs: dict[str, Any], shown: int) -> int:
    """Groups Elasticsearch left out: exact from the cardinality, else at least one."""
    count = (aggs.get(GROUP_COUNT_AGG) or {}).get("value")
    if count is not None:
        return max(0, int(count) - shown)
    node = aggs.get(GROUPS_AGG) or {}
    if node.get("after_key") is not None and shown >= MULTI_GROUP_FETCH:
        return 1  # composite page full: more combinations exist, how many is unknown
    return 1 if node.get("sum_other_doc_count", 0) else 0


def _single(
    check: CheckDefinition,
    state: State,
    summary: str,
    value: float,
    unit: str | None = None,
    perf_min: float | None = None,
    perf_max: float | None = None,
    extra_perf: Iterable[Perfdatum] = (),
) -> Result:
    unit = check.unit if unit is None else unit
    perf = (
        Perfdatum(
            _label(check), value, _uom(unit), check.warning, check.critical, perf_min, perf_max
        ),
        *extra_perf,
    )
    return Result(
        check=check.name, state=state, summary=summary, value=value, unit=unit, perfdata=perf
    )


def _no_data(check: CheckDefinition, reason: str, extra_perf: Iterable[Perfdatum] = ()) -> Result:
    state = check.effective_no_data
    return Result(
        check=check.name,
        state=state,
        summary=f"no data: {reason}",
        unit=check.unit,
        error=reason if state is State.UNKNOWN else None,
        error_kind="no_data",
        perfdata=(
            Perfdatum(_label(check), None, _uom(check.unit), check.warning, check.critical),
            *extra_perf,
        ),
    )


_NO_SHARD = "no_shard_available_action_exception"


def _partial_problem(answer: dict[str, Any]) -> str | None:
    """Never an OK built on partial data: failed shards or a server-side timeout."""
    shards = answer.get("_shards") or {}
    failed = int(shards.get("failed", 0) or 0)
    if failed:
        failures = shards.get("failures") or []
        detail = ", ".join(_shard_failure(f) for f in failures[:3])
        if any((f.get("reason") or {}).get("type") == _NO_SHARD for f in failures):
            detail += "; no primary shard available (an index is red)"
        return f"partial results: {failed} of {shards.get('total', '?')} shards failed ({detail})"
    total = int(shards.get("total", 0) or 0)
    answered = int(shards.get("successful", 0) or 0) + int(shards.get("skipped", 0) or 0)
    if total and answered < total:
        # OpenSearch leaves a shard with no copy to search out of "failed" (and names none).
        return (
            f"partial results: {total - answered} of {total} shards had no copy to search "
            "(no primary shard available: an index is red)"
        )
    if answer.get("timed_out"):
        return "search timed out on the Elasticsearch side, partial results ignored"
    return None


def _shard_failure(failure: dict[str, Any]) -> str:
    """``[logs-1][0]: query_shard_exception: failed to create query``."""
    reason = failure.get("reason") or {}
    return (
        f"[{failure.get('index', '?')}][{failure.get('shard', '?')}]: "
        f"{reason.get('type', '')}: {reason.get('reason', '')}"
    )


def _metric_value(node: dict[str, Any] | None, agg: str, percentile: float | None) -> float | None:
    if not node:
        return None
    if agg == "percentile":
        values = node.get("values") or {}
        value = next(iter(values.values()), None) if values else None
    else:
        value = node.get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _total(answer: dict[str, Any]) -> int:
    total = (answer.get("hits") or {}).get("total", 0)
    return int(total["value"] if isinstance(total, dict) else total)


def _key_text(value: Any, bucket: dict[str, Any], fields: int) -> str:
    as_string = bucket.get("key_as_string")
    if fields == 1 and isinstance(as_string, str):
        return as_string
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(none)"
    return str(value)


def _agg_name(agg: str | None, percentile: float | None) -> str:
    if agg == "percentile":
        return f"p{format_number(percentile or 0)}"
    return agg or "count"


def _label(check: CheckDefinition) -> str:
    if isinstance(check, MetricCheck):
        return _agg_name(check.agg, check.percentile)
    return {
        "count": "count",
        "ratio": "ratio",
        "change": "change",
        "freshness": "age",
        "unassigned_shards": "unassigned_shards",
    }.get(check.kind, check.kind)


def _uom(unit: str) -> str:
    return unit if unit in PERFDATA_UOMS else ""


def _with_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    text = format_number(round(value, 1) if abs(value) >= 100 else round(value, 2))
    if not unit:
        return text
    return f"{text} {unit}" if unit != "%" else f"{text} %"


def _age_text(seconds: float, unit: str) -> str:
    """``42.5 s``; long ages also in hours/days: ``7260 s (2h 1m)``."""
    text = _with_unit(seconds, unit)
    if unit != "s" or seconds < 120:
        return text
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return f"{text} ({' '.join(p for p in parts if p)})"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _maybe(value: float | None) -> str:
    return "no data" if value is None else format_number(value)


def _window(check: CheckDefinition) -> str:
    return format_duration(check.window)


def _index(check: CheckDefinition) -> str:
    return ",".join(check.index)


def _where(check: CheckDefinition) -> str:
    return f"{check.kind} check on {_index(check)}"


_EVALUATORS: dict[type, Any] = {
    CountCheck: _count,
    MetricCheck: _metric,
    RatioCheck: _ratio,
    ChangeCheck: _change,
    FreshnessCheck: _freshness,
    ClusterHealthCheck: _health,
    NodesCheck: _nodes,
    UnassignedShardsCheck: _unassigned,
    JvmHeapCheck: _jvm,
    DiskCheck: _disk,
    MasterCheck: _master,
}
