"""All passive targets of one service as one declared output (a ``ResultListener``).

The service starts it, hands it every recorded result, and stops it; it reads what it needs
to know about a check (interval, labels, timeout) from the read-only view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from esbridge.config import ConfigError, Icinga2PassiveConfig, PassiveTarget
from esbridge.passive.targets import Target, make_target
from esbridge.result import Result

if TYPE_CHECKING:
    from esbridge.store import Transition
    from esbridge.view import ServiceView

log = logging.getLogger("esbridge.passive")


class PassiveHub:
    """All targets of one service: the result listener, the metrics, the status."""

    def __init__(self, view: ServiceView | None, targets: list[Target]) -> None:
        self.view = view
        self.targets = targets

    async def start(self) -> None:
        """Validate each target once more (secrets readable, files present), start workers.

        A problem marks that target down with the reason (``/readyz``, metrics); the
        service and the other targets go on.
        """
        for target in self.targets:
            problem = target_problem(target)
            if problem is not None:
                target.fail("config", problem)
            target.start()

    async def stop(self, grace: float) -> None:
        await self.close()

    def on_result(self, result: Result, transition: Transition | None = None) -> None:
        now = time.time()
        interval, timeout = 60.0, 10.0
        labels: dict[str, str] = {}
        if self.view is not None:
            interval = self.view.interval(result.check)
            timeout = self.view.timeout(result.check)
            check = self.view.checks.get(result.check)
            if check is not None:
                labels = dict(check.labels)
        for target in self.targets:
            if not target.wants(result.check):
                continue
            target.start()
            try:
                for sub in target.submissions(result, interval, labels, timeout):
                    target.offer(sub, now)
            except Exception as exc:
                target.fail("internal", f"{result.check}: {exc!r}")

    def status(self) -> list[dict[str, Any]]:
        return [t.status() for t in self.targets]

    def metrics(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "esbridge_passive_sent", "Results accepted by the passive target", labels=["target"]
        )
        failed = CounterMetricFamily(
            "esbridge_passive_failed",
            "Failed delivery attempts by reason",
            labels=["target", "reason"],
        )
        dropped = CounterMetricFamily(
            "esbridge_passive_dropped",
            "Results never delivered: replaced by a newer one, queue full or retries used up",
            labels=["target"],
        )
        queue = GaugeMetricFamily(
            "esbridge_passive_queue_length", "Results waiting for delivery", labels=["target"]
        )
        up = GaugeMetricFamily(
            "esbridge_passive_target_up",
            "1 when the last delivery attempt succeeded (or none was made yet)",
            labels=["target"],
        )
        for t in self.targets:
            sent.add_metric([t.name], float(t.stats.sent))
            for reason, count in sorted(t.stats.failed.items()):
                failed.add_metric([t.name, reason], float(count))
            dropped.add_metric([t.name], float(t.stats.dropped))
            queue.add_metric([t.name], float(len(t.queue)))
            up.add_metric([t.name], 0.0 if t.stats.up is False else 1.0)
        yield from (sent, failed, dropped, queue, up)

    async def close(self) -> None:
        for target in self.targets:
            await target.close()


def target_problem(target: Target) -> str | None:
    """Why a target cannot deliver as configured, or ``None``."""
    config = target.config
    if isinstance(config, Icinga2PassiveConfig):
        try:
            config.resolved_password()
        except ConfigError as exc:
            return str(exc)
        if config.ca_certs is not None and not config.ca_certs.is_file():
            return f"no such file: {config.ca_certs}"
        return None
    folder = config.command_file.parent
    return None if folder.is_dir() else f"folder {folder} does not exist"


def passive_hub(configs: Sequence[PassiveTarget], view: ServiceView | None) -> PassiveHub | None:
    """The passive output for the enabled targets of the configuration, if any."""
    enabled = [c for c in configs if c.enabled]
    if not enabled:
        return None
    log.info("passive delivery to %s", ", ".join(f"{c.name} ({c.type})" for c in enabled))
    return PassiveHub(view, [make_target(c) for c in enabled])
