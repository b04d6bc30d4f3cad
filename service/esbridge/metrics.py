"""Prometheus metrics computed from the result store at scrape time.

Nothing here is a gauge mutated by jobs, so the metrics cannot drift from what the API says.
Overall check series carry only the ``check`` label; per-group results use separate metric
names (``esbridge_group_*``) so aggregations never mix the two levels. Staleness is applied
here as everywhere: a stale result exports status 3 (UNKNOWN) and ``esbridge_check_stale 1``.

Two parts, both read at scrape time:

- :class:`CheckSeries` writes the per-check and per-group families (tens of thousands of
  lines at scale) straight to the text format, caching each check's lines until its entry
  in the store changes or its staleness flips, and each check's and group's label text for
  as long as the check exists (labels do not change from run to run, values do).
  ``prometheus_client`` builds a sample object per line and formats it generically:
  measured, 10,000 group series took about 190 ms per scrape that way against a goal of
  100 ms; cached lines take a few milliseconds, and a scrape after every check ran again
  formats numbers only (bench/README.md, "Scrape").
- :class:`StoreCollector`, a ``prometheus_client`` custom collector, yields the few
  service-level families (connections, reload, store, scheduler, passive, build info).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from esbridge import __version__
from esbridge.limits import label_name
from esbridge.ranges import Range
from esbridge.result import State

if TYPE_CHECKING:
    from esbridge.models import CheckDefinition
    from esbridge.store import CheckState
    from esbridge.view import ServiceView

log = logging.getLogger(__name__)

MAX_GROUP_SERIES_PER_CHECK = 1000


class StoreCollector(Collector):
    """Reads the service's view on every scrape."""

    def __init__(self, view: ServiceView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view
        es_up = GaugeMetricFamily(
            "esbridge_elasticsearch_up",
            "1 when the connection's last request got an answer",
            labels=["connection"],
        )
        requests = CounterMetricFamily(
            "esbridge_elasticsearch_requests",
            "Requests sent to Elasticsearch",
            labels=["connection"],
        )
        searches = CounterMetricFamily(
            "esbridge_elasticsearch_searches",
            "Searches sent inside _msearch requests (a merged search counts once)",
            labels=["connection"],
        )
        retries = CounterMetricFamily(
            "esbridge_elasticsearch_retries",
            "Requests retried after a throttling answer",
            labels=["connection"],
        )
        for connection in view.connections():
            es_up.add_metric([connection.name], 1.0 if connection.up else 0.0)
            requests.add_metric([connection.name], float(connection.stats.requests))
            searches.add_metric([connection.name], float(connection.stats.searches))
            retries.add_metric([connection.name], float(connection.stats.retries))
        yield from (es_up, requests, searches, retries)

        reload_ok = GaugeMetricFamily(
            "esbridge_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded",
        )
        reload_ok.add_metric([], 1.0 if view.reload_status.successful else 0.0)
        reload_at = GaugeMetricFamily(
            "esbridge_config_last_reload_timestamp_seconds",
            "When the configuration was last (re)loaded",
        )
        reload_at.add_metric([], view.reload_status.at)
        checks = GaugeMetricFamily("esbridge_checks", "Checks loaded")
        checks.add_metric([], float(len(view.checks)))
        yield from (reload_ok, reload_at, checks)

        store_up = GaugeMetricFamily(
            "esbridge_state_store_up",
            "1 when the state store index accepts writes (1 when disabled)",
        )
        store_up.add_metric([], 0.0 if view.persistence_ok is False else 1.0)
        pending = GaugeMetricFamily(
            "esbridge_state_store_pending_writes", "Store entries not yet persisted"
        )
        pending.add_metric([], float(view.pending_writes))
        yield from (store_up, pending)

        histogram = view.scheduler.lateness
        lateness = HistogramMetricFamily(
            "esbridge_scheduler_lateness_seconds",
            "Actual start minus scheduled start of check runs",
        )
        buckets = [
            (_le(b), float(c)) for b, c in zip(histogram.buckets, histogram.counts, strict=True)
        ]
        buckets.append(("+Inf", float(histogram.count)))
        lateness.add_metric([], buckets, histogram.sum)
        skipped = CounterMetricFamily(
            "esbridge_scheduler_skipped_runs",
            "Runs coalesced because the previous run was still in flight",
        )
        skipped.add_metric([], float(view.scheduler.skipped()))
        yield from (lateness, skipped)

        for listener in view.listeners():
            yield from listener.metrics()
        if view.cluster is not None:
            yield from view.cluster.metrics()

        info = InfoMetricFamily("esbridge_build", "esbridge version")
        info.add_metric([], {"version": __version__})
        yield info


def _le(bound: float) -> str:
    return repr(float(bound))


def make_registry(view: ServiceView) -> CollectorRegistry:
    """A registry with only our collector: no ``_created`` series, no process defaults."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(view))
    return registry


# -- per-check families, written as text ---------------------------------------------------

_CHECK_FAMILIES: tuple[tuple[str, str, str], ...] = (
    (
        "esbridge_check_status_code",
        "gauge",
        "Check state as a Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
    ),
    ("esbridge_check_state", "gauge", "1 for the check's current state"),
    (
        "esbridge_check_value",
        "gauge",
        "Measured value of the check (worst group for grouped checks)",
    ),
    ("esbridge_check_last_run_timestamp_seconds", "gauge", "When the check was last evaluated"),
    (
        "esbridge_check_last_success_timestamp_seconds",
        "gauge",
        "When the check last got an answer from Elasticsearch",
    ),
    (
        "esbridge_check_state_change_timestamp_seconds",
        "gauge",
        "When the check's state last changed",
    ),
    ("esbridge_check_duration_seconds", "gauge", "Duration of the last evaluation"),
    ("esbridge_check_stale", "gauge", "1 when the last result is older than the staleness limit"),
    ("esbridge_check_runs_total", "counter", "Evaluations of the check"),
    ("esbridge_check_errors_total", "counter", "Failed evaluations by reason"),
    ("esbridge_group_status_code", "gauge", "Per-group state as a Nagios exit code"),
    ("esbridge_group_value", "gauge", "Per-group measured value"),
    (
        "esbridge_check_threshold",
        "gauge",
        "Finite ends of the check's warning/critical range: it alerts outside lower..upper "
        '(inside when inside="true"); a plain N range has no lower line',
    ),
)
_FAMILY_COUNT = len(_CHECK_FAMILIES)


def _escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value.__class__ is float and value - value == 0.0:  # finite: the common case
        return repr(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


_STATE_VALUES = tuple((s.name, int(s)) for s in State)


class _Labels:
    """One check's series names with their labels, up to the value: built once per check.

    The labels of a check and of its groups do not change from one run to the next, only the
    values do, so a scrape after every check ran again (the usual case when the scrape
    interval is at least the check interval) formats numbers, not label sets.
    """

    __slots__ = ("check", "errors", "groups", "prefix", "states", "thresholds", "thresholds_for")

    def __init__(self, name: str) -> None:
        check = f'check="{_escape(name)}"'
        self.check = check
        self.prefix = tuple(f"{family}{{{check}}} " for family, _, _ in _CHECK_FAMILIES)
        # esbridge_check_state: the five lines for each exit code
        self.states = {
            code: "".join(
                f'esbridge_check_state{{{check},state="{state}"}} {1.0 if value == code else 0.0}\n'
                for state, value in _STATE_VALUES
            )
            for _, code in _STATE_VALUES
        }
        self.groups: dict[tuple[tuple[str, str], ...], tuple[str, str]] = {}
        self.errors: dict[str, str] = {}
        self.thresholds_for: object = None
        self.thresholds = ""

    def group(self, key: tuple[tuple[str, str], ...]) -> tuple[str, str]:
        """The status-code and value prefixes of one group's series."""
        prefixes = self.groups.get(key)
        if prefixes is None:
            labels = self.check + "".join(f',{label_name(k)}="{_escape(v)}"' for k, v in key)
            prefixes = (
                f"esbridge_group_status_code{{{labels}}} ",
                f"esbridge_group_value{{{labels}}} ",
            )
            if len(self.groups) >= 4 * MAX_GROUP_SERIES_PER_CHECK:
                self.groups.clear()  # groups come and go: keep it bounded
            self.groups[key] = prefixes
        return prefixes

    def error(self, reason: str) -> str:
        prefix = self.errors.get(reason)
        if prefix is None:
            prefix = f'esbridge_check_errors_total{{{self.check},reason="{_escape(reason)}"}} '
            self.errors[reason] = prefix
        return prefix


class CheckSeries:
    """Per-check and per-group series as exposition text, cached per store entry."""

    def __init__(self, view: ServiceView) -> None:
        self.view = view
        self._cache: dict[str, tuple[tuple[object, ...], tuple[str, ...]]] = {}
        self._labels: dict[str, _Labels] = {}

    def render(self, now: float | None = None) -> str:
        """The per-check families as text; ``now`` (default: the clock) decides staleness."""
        view = self.view
        now = time.time() if now is None else now
        chunks: list[list[str]] = [[] for _ in range(_FAMILY_COUNT)]
        seen = set()
        definitions = view.checks
        # A replica exports every check of the shared view, but none it has no result for
        # yet: a starting replica must not add UNKNOWN to ``max by (check)`` (scale-out.md).
        shared = view.cluster is not None
        for entry in view.entries():
            if shared and entry.held is None:
                continue
            seen.add(entry.name)
            # an owner's mark followed: the slot it dates the run to (runs and last success
            # follow it); the fields, not properties, for the other checks
            marked = None if entry.mark is None else entry.evaluated_at
            stale = view.is_stale(entry, now, marked)
            key = (
                id(entry.held),
                entry.ran,  # a later run of that answer (shared view)
                marked,
                entry.count,
                entry.since,
                entry.succeeded,
                stale,
                tuple(sorted(entry.errors.items())),
                id(definitions.get(entry.name)),  # its thresholds change on reload
            )
            cached = self._cache.get(entry.name)
            if cached is None or cached[0] != key:
                lines = self._safe_lines(entry, now, stale, definitions.get(entry.name))
                cached = (key, lines)
                self._cache[entry.name] = cached
            for i, text in enumerate(cached[1]):
                if text:
                    chunks[i].append(text)
        for name in [n for n in self._cache if n not in seen]:
            del self._cache[name]
            self._labels.pop(name, None)
        out: list[str] = []
        for (name, kind, help_text), lines in zip(_CHECK_FAMILIES, chunks, strict=True):
            if not lines:
                continue
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
            out.extend(lines)
        return "".join(out)

    def _safe_lines(
        self,
        entry: CheckState,
        now: float,
        stale: bool,
        definition: CheckDefinition | None = None,
    ) -> tuple[str, ...]:
        """One check's series; if they cannot be built, that check reads UNKNOWN alone."""
        try:
            return self._lines(entry, now, stale, definition)
        except Exception:
            log.exception("cannot render the metrics of check %s", entry.name)
            lines = [""] * _FAMILY_COUNT
            lines[0] = f'esbridge_check_status_code{{check="{_escape(entry.name)}"}} 3.0\n'
            return tuple(lines)

    def _lines(
        self,
        entry: CheckState,
        now: float,
        stale: bool,
        definition: CheckDefinition | None = None,
    ) -> tuple[str, ...]:
        # Fresh, the answer is the held one and the run's time and duration the entry's: a
        # scrape builds no result per run a replica followed (store.CheckState).
        result = self.view.effective(entry, now) if stale else entry.held
        names = self._labels.get(entry.name)
        if names is None:
            names = self._labels[entry.name] = _Labels(entry.name)
        prefix = names.prefix
        code = int(result.state) if result is not None else int(State.UNKNOWN)
        fresh = result is not None and result.error_kind != "stale"
        lines = [""] * _FAMILY_COUNT
        lines[0] = f"{prefix[0]}{code}.0\n"
        lines[1] = names.states[code]
        if fresh and result is not None and result.value is not None:
            lines[2] = f"{prefix[2]}{_number(result.value)}\n"
        timing = entry.timing
        if timing is not None:
            lines[3] = f"{prefix[3]}{_number(timing[0])}\n"
            lines[6] = f"{prefix[6]}{_number(timing[1])}\n"
        if entry.last_success is not None:
            lines[4] = f"{prefix[4]}{_number(entry.last_success)}\n"
        if entry.since is not None:
            lines[5] = f"{prefix[5]}{_number(entry.since)}\n"
        lines[7] = f"{prefix[7]}{0.0 if fresh or result is None else 1.0}\n"
        lines[8] = f"{prefix[8]}{float(entry.runs)}\n"
        if entry.errors:
            lines[9] = "".join(
                f"{names.error(reason)}{float(count)}\n"
                for reason, count in sorted(entry.errors.items())
            )
        if fresh and result is not None and result.groups:
            status, value = [], []
            group_prefixes = names.group
            for group in result.groups[:MAX_GROUP_SERIES_PER_CHECK]:
                status_prefix, value_prefix = group_prefixes(group.key)
                status.append(f"{status_prefix}{int(group.state)}.0\n")
                if group.value is not None:
                    value.append(f"{value_prefix}{_number(group.value)}\n")
            lines[10] = "".join(status)
            lines[11] = "".join(value)
        if definition is not None:
            if names.thresholds_for is not definition:  # its thresholds change on reload
                names.thresholds_for = definition
                names.thresholds = _threshold_lines(
                    names.check, definition.warning, definition.critical
                )
            lines[12] = names.thresholds
        return tuple(lines)


def _threshold_lines(check: str, warning: Range | None, critical: Range | None) -> str:
    """``esbridge_check_threshold`` samples: what a dashboard draws as threshold lines."""
    out = []
    for level, rng in (("warning", warning), ("critical", critical)):
        if rng is None:
            continue
        inside = "true" if rng.inside else "false"
        plain = not rng.inside and ":" not in str(rng) and rng.start == 0
        for bound, value in (("lower", rng.start), ("upper", rng.end)):
            if math.isinf(value) or (bound == "lower" and plain):
                continue
            out.append(
                f'esbridge_check_threshold{{{check},level="{level}",bound="{bound}",'
                f'inside="{inside}"}} {_number(value)}\n'
            )
    return "".join(out)


def exposition(series: CheckSeries, registry: CollectorRegistry) -> bytes:
    """The whole ``/metrics`` answer: per-check text, then the collector's families."""
    return series.render().encode() + generate_latest(registry)
