"""The JSON API's response bodies as pydantic models: they are the ``/openapi.json`` contract.

Every JSON route answers one of these, so the schema describes what clients (the status
page, ``check_esbridge``, ``esbridge gate``) read, and the schemathesis test checks the
answers against it. Field names are the API's; do not rename without a new API version.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from esbridge.errors import ErrorKind
from esbridge.events import AfterDeploy, DeployEvent
from esbridge.result import Result
from esbridge.statedoc import result_to_dict

STATES = "OK, WARNING, CRITICAL or UNKNOWN"


class ErrorBody(BaseModel):
    error: str
    did_you_mean: list[str] = Field(default_factory=list)


class NotOwnerBody(ErrorBody):
    """A run asked of a replica that does not own the check: where to ask instead."""

    owner: str | None = Field(description="the replica that owns it; null while forming")
    owner_url: str | None = Field(description="the address that replica listens on")


class PerfdatumBody(BaseModel):
    """One perfdata item; ranges as their Nagios text, ``null`` for an undetermined value."""

    label: str
    value: float | None
    uom: str
    warn: str | None
    crit: str | None
    min: float | None
    max: float | None


class GroupBody(BaseModel):
    """One group (e.g. one host) of a grouped check."""

    key: dict[str, str]
    key_text: str = Field(description="host=web-01,service=api (the plugin's -g)")
    label: str
    state: str = Field(description=STATES)
    value: float | None
    summary: str
    perfdata: list[PerfdatumBody]


class ResultBody(BaseModel):
    """One evaluation of one check, staleness applied."""

    check: str
    state: str = Field(description=STATES)
    status_code: int = Field(ge=0, le=3, description="the Nagios exit code")
    summary: str
    value: float | None
    unit: str
    long_output: list[str]
    perfdata: list[PerfdatumBody]
    groups: list[GroupBody]
    groups_omitted: int
    error: str | None
    error_kind: ErrorKind | None = Field(description="why the result has no measured state")
    evaluated_at: float
    duration: float


class NagiosText(BaseModel):
    text: str = Field(description="the exact plugin output")
    exit_code: int = Field(ge=0, le=3)


class CheckSummary(BaseModel):
    name: str
    kind: str
    description: str
    state: str = Field(
        description="OK, WARNING, CRITICAL, UNKNOWN, or PENDING before the first run"
    )
    status_code: int
    summary: str
    value: float | None
    unit: str
    since: str | None
    since_ts: float | None
    stale_since: str | None = Field(
        None, description="when the result went stale (UNKNOWN since then; since: last change)"
    )
    stale_since_ts: float | None = None
    evaluated_at: str | None
    evaluated_at_ts: float | None
    stale: bool
    tags: list[str]
    labels: dict[str, str]
    error: str | None
    groups_not_ok: int
    owner: str | None = Field(
        None, description="replica that evaluates the check (cluster mode; null otherwise)"
    )
    age_seconds: float | None = Field(None, description="seconds since the result was made")


class CheckList(BaseModel):
    checks: list[CheckSummary]
    counts: dict[str, int]
    generated_at: float
    total: int


class Transition(BaseModel):
    at: float
    at_iso: str
    from_: str | None = Field(alias="from")
    to: str
    summary: str
    after_deploy: AfterDeploy | None = None

    model_config = ConfigDict(populate_by_name=True)


class CheckDetail(CheckSummary):
    definition: dict[str, Any] = Field(description="the check as loaded (docs/checks.md)")
    result: ResultBody | None
    nagios: NagiosText
    previous_state: str | None
    last_success_ts: float | None
    consecutive_failures: int
    runs: int
    errors: dict[str, int] = Field(description="failed evaluations by error kind")
    transitions: list[Transition]
    deploys: list[DeployEvent] = Field(
        default_factory=list, description="deploys of a matching tag since the oldest transition"
    )
    next_run_ts: float | None
    max_age_seconds: float
    plugin_command: str


class ReloadAnswer(BaseModel):
    successful: bool
    error: str | None
    added: list[str]
    changed: list[str]
    removed: list[str]
    checks: int


class HealthAnswer(BaseModel):
    status: str
    version: str
    uptime_seconds: float


class ConnectionStatus(BaseModel):
    up: bool
    last_error: str | None


class StateStoreStatus(BaseModel):
    enabled: bool
    writable: bool | None = Field(description="null until the first write was tried")
    error: str | None
    pending_writes: int


class ConfigStatus(BaseModel):
    last_reload_successful: bool
    error: str | None


class PassiveTargetStatus(BaseModel):
    name: str
    type: str
    up: bool | None
    queue_length: int
    sent: int
    failed: int
    dropped: int
    last_success: float | None
    last_error: str | None
    last_error_at: float | None


class Readiness(BaseModel):
    """``/readyz``: checks loaded, Elasticsearch reachable, state store writable."""

    ready: bool
    checks_loaded: int
    elasticsearch: dict[str, ConnectionStatus]
    state_store: StateStoreStatus
    config: ConfigStatus
    cluster: dict[str, Any] | None = Field(None, description="cluster mode only")
    passive: list[PassiveTargetStatus] = Field(
        default_factory=list, description="passive targets: reported, never a reason to be unready"
    )


class StatusAnswer(Readiness):
    """Service facts for the status page header, with the readiness detail."""

    version: str
    started_at: float
    checks: int
    files: list[str]
    default_interval: str


# -- from the domain types ------------------------------------------------------------------


def result_body(result: Result) -> ResultBody:
    """The API form of a result: the store's serialisation, checked against the model."""
    return ResultBody.model_validate(result_to_dict(result))
