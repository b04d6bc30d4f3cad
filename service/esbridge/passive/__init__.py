"""Passive delivery: push every result to Icinga 2 (REST API) or Nagios (external command file).

With passive delivery the monitoring core runs no plugin at all: esbridge already holds each
result the moment it is evaluated, so it submits it itself. Design rules:

* **Evaluation never waits for a target.** :meth:`PassiveHub.on_result` (a
  declared :class:`~esbridge.listeners.ResultListener` the service starts, feeds and stops) only
  renders the submission and puts it in the target's queue; worker tasks deliver.
* **Memory is bounded by the number of services.** A target's queue holds at most one
  submission per (host, service): a newer result replaces the queued one (counted as
  dropped), so a target that is down for hours holds one entry per service, not hours of
  results. ``queue_size`` bounds it further (the oldest entry goes first).
* **Failures are retried with exponential backoff** (``backoff`` … ``backoff_max``), at most
  ``retries`` times per submission; a newer result for the same service replaces a failing
  one. With ``when: change`` the "last delivered" state only moves on success, so a change
  that could not be delivered is sent again with the next evaluation.
* **Staleness is the core's job when esbridge goes quiet**: Icinga 2 submissions carry a
  ``ttl`` (``ttl_factor * period + timeouts``) after which Icinga runs the service's own
  check command (the ``passive`` dummy: UNKNOWN); Nagios uses ``check_freshness`` with a
  ``freshness_threshold`` computed the same way (deploy/nagios/passive.cfg).

Counters are exported by :meth:`PassiveHub.metrics` (``esbridge_passive_*``) and the state of
each target by :meth:`PassiveHub.status` (``/readyz`` detail, ``GET /api/v1/status``).
A failing target does **not** make esbridge unready: its HTTP outputs still work, and taking
esbridge out of a load balancer would not bring Icinga back (docs/passive.md).
"""

from esbridge.passive.hub import PassiveHub, passive_hub
from esbridge.passive.submission import (
    NAGIOS_MAX_COMMAND,
    DeliveryError,
    LatestQueue,
    Submission,
    nagios_command,
    split_perfdata,
)
from esbridge.passive.targets import (
    Icinga2Target,
    NagiosTarget,
    Target,
    TargetConfig,
    TargetStats,
    make_target,
    write_commands,
)

__all__ = [
    "NAGIOS_MAX_COMMAND",
    "DeliveryError",
    "Icinga2Target",
    "LatestQueue",
    "NagiosTarget",
    "PassiveHub",
    "Submission",
    "Target",
    "TargetConfig",
    "TargetStats",
    "make_target",
    "nagios_command",
    "passive_hub",
    "split_perfdata",
    "write_commands",
]
