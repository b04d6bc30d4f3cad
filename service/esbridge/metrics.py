"""Prometheus metrics computed from the result store at scrape time.

A custom collector (``prometheus_client``'s pattern): no gauge is mutated by jobs, so the
metrics cannot drift from what the API says. Overall check series carry only the ``check``
label; per-group results use separate metric names (``esbridge_group_*``) so aggregations
never mix the two levels. Staleness is applied here as everywhere: a stale result exports
status 3 (UNKNOWN) and ``esbridge_check_stale 1``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from esbridge import __version__
from esbridge.result import State

if TYPE_CHECKING:
    from esbridge.app import Service

MAX_GROUP_SERIES_PER_CHECK = 1000
_LABEL_RE = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED = {"check", "state", "reason", "connection", "le", "job", "instance"}


def label_name(field: str) -> str:
    """A group field as a Prometheus label name: ``host.name`` → ``host_name``."""
    name = _LABEL_RE.sub("_", field)
    if not name or name[0].isdigit() or name.startswith("__"):
        name = f"group_{name.lstrip('_')}"
    if name in _RESERVED:
        name = f"group_{name}"
    return name


class StoreCollector(Collector):
    """Reads the service's store on every scrape."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        store = service.store
        now = time.time()
        status = GaugeMetricFamily(
            "esbridge_check_status_code",
            "Check state as a Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
            labels=["check"],
        )
        one_hot = GaugeMetricFamily(
            "esbridge_check_state", "1 for the check's current state", labels=["check", "state"]
        )
        value = GaugeMetricFamily(
            "esbridge_check_value",
            "Measured value of the check (worst group for grouped checks)",
            labels=["check"],
        )
        last_run = GaugeMetricFamily(
            "esbridge_check_last_run_timestamp_seconds",
            "When the check was last evaluated",
            labels=["check"],
        )
        last_success = GaugeMetricFamily(
            "esbridge_check_last_success_timestamp_seconds",
            "When the check last got an answer from Elasticsearch",
            labels=["check"],
        )
        changed = GaugeMetricFamily(
            "esbridge_check_state_change_timestamp_seconds",
            "When the check's state last changed",
            labels=["check"],
        )
        duration = GaugeMetricFamily(
            "esbridge_check_duration_seconds", "Duration of the last evaluation", labels=["check"]
        )
        stale = GaugeMetricFamily(
            "esbridge_check_stale",
            "1 when the last result is older than the staleness limit",
            labels=["check"],
        )
        runs = CounterMetricFamily(
            "esbridge_check_runs", "Evaluations of the check", labels=["check"]
        )
        errors = CounterMetricFamily(
            "esbridge_check_errors", "Failed evaluations by reason", labels=["check", "reason"]
        )
        group_families: dict[tuple[str, ...], tuple[GaugeMetricFamily, GaugeMetricFamily]] = {}

        for entry in store.all():
            name = entry.name
            result = store.effective(entry, now)
            code = int(result.state) if result is not None else int(State.UNKNOWN)
            status.add_metric([name], code)
            for state in State:
                one_hot.add_metric([name, state.name], 1.0 if state == code else 0.0)
            if result is not None and result.value is not None and result.error_kind != "stale":
                value.add_metric([name], float(result.value))
            if entry.result is not None:
                last_run.add_metric([name], entry.result.evaluated_at)
                duration.add_metric([name], entry.result.duration)
            if entry.last_success is not None:
                last_success.add_metric([name], entry.last_success)
            if entry.since is not None:
                changed.add_metric([name], entry.since)
            stale.add_metric([name], 1.0 if store.is_stale(entry, now) else 0.0)
            runs.add_metric([name], float(entry.runs))
            for reason, count in sorted(entry.errors.items()):
                errors.add_metric([name, reason], float(count))
            if result is not None and result.groups and result.error_kind != "stale":
                for group in result.groups[:MAX_GROUP_SERIES_PER_CHECK]:
                    fields = tuple(label_name(k) for k, _ in group.key)
                    families = group_families.get(fields)
                    if families is None:
                        families = (
                            GaugeMetricFamily(
                                "esbridge_group_status_code",
                                "Per-group state as a Nagios exit code",
                                labels=["check", *fields],
                            ),
                            GaugeMetricFamily(
                                "esbridge_group_value",
                                "Per-group measured value",
                                labels=["check", *fields],
                            ),
                        )
                        group_families[fields] = families
                    labels = [name, *(v for _, v in group.key)]
                    families[0].add_metric(labels, int(group.state))
                    if group.value is not None:
                        families[1].add_metric(labels, float(group.value))

        yield from (
            status,
            one_hot,
            value,
            last_run,
            last_success,
            changed,
            duration,
            stale,
            runs,
            errors,
        )
        yield from _merge_group_families(group_families)

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
            "Searches sent inside _msearch requests",
            labels=["connection"],
        )
        retries = CounterMetricFamily(
            "esbridge_elasticsearch_retries",
            "Requests retried after a throttling answer",
            labels=["connection"],
        )
        for connection in service.connections:
            es_up.add_metric([connection.name], 1.0 if connection.up else 0.0)
            requests.add_metric([connection.name], float(connection.stats.requests))
            searches.add_metric([connection.name], float(connection.stats.searches))
            retries.add_metric([connection.name], float(connection.stats.retries))
        yield from (es_up, requests, searches, retries)

        reload_ok = GaugeMetricFamily(
            "esbridge_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded",
        )
        reload_ok.add_metric([], 1.0 if service.reload_status.successful else 0.0)
        reload_at = GaugeMetricFamily(
            "esbridge_config_last_reload_timestamp_seconds",
            "When the configuration was last (re)loaded",
        )
        reload_at.add_metric([], service.reload_status.at)
        checks = GaugeMetricFamily("esbridge_checks", "Checks loaded")
        checks.add_metric([], float(len(service.checkset.checks)))
        yield from (reload_ok, reload_at, checks)

        store_up = GaugeMetricFamily(
            "esbridge_state_store_up",
            "1 when the state store index accepts writes (1 when disabled)",
        )
        store_up.add_metric([], 0.0 if store.persistence_ok is False else 1.0)
        pending = GaugeMetricFamily(
            "esbridge_state_store_pending_writes", "Store entries not yet persisted"
        )
        pending.add_metric([], float(store.dirty_count))
        yield from (store_up, pending)

        histogram = service.scheduler.lateness
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
        skipped.add_metric([], float(service.scheduler.skipped))
        yield from (lateness, skipped)

        for sender in getattr(service, "passive_senders", []):
            yield from sender.metrics()

        info = InfoMetricFamily("esbridge_build", "esbridge version")
        info.add_metric([], {"version": __version__})
        yield info


def _le(bound: float) -> str:
    return repr(float(bound))


def _merge_group_families(
    families: dict[tuple[str, ...], tuple[GaugeMetricFamily, GaugeMetricFamily]],
) -> Iterator[Metric]:
    """One family per metric name, even when checks group by different fields."""
    if not families:
        return
    merged_status: GaugeMetricFamily | None = None
    merged_value: GaugeMetricFamily | None = None
    for status_family, value_family in families.values():
        if merged_status is None:
            merged_status, merged_value = status_family, value_family
            continue
        merged_status.samples.extend(status_family.samples)
        assert merged_value is not None
        merged_value.samples.extend(value_family.samples)
    assert merged_status is not None and merged_value is not None
    yield merged_status
    yield merged_value


def make_registry(service: Service) -> CollectorRegistry:
    """A registry with only our collector: no ``_created`` series, no process defaults."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(service))
    return registry
