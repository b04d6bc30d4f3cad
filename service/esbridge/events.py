"""Deploy events: recorded in an Elasticsearch index, read back by every replica.

``POST /api/v1/events`` writes ``{service, version, by, at, tags}`` to the events index
(explicit mapping, created by esbridge and re-created when missing). A pipeline that already
writes deploy records to an index of its own can be read as well, through a field mapping.
Each esbridge keeps the recent events in memory, refreshed from Elasticsearch on a short
interval, so the transitions it records can say "started 2 min after deploy web 1.4.2 by ci"
without a query per result, and every replica pointed at the same cluster sees the same events.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from esbridge.config import EventsConfig
from esbridge.errors import ESError
from esbridge.esclient import Connection
from esbridge.mappings import index_mapping

log = logging.getLogger(__name__)

EVENTS_MAPPING = index_mapping(
    "strict",
    keyword=("service", "version", "by", "tags"),
    epoch_millis=("at", "recorded_at"),
)
MAX_EVENTS = 1000  # the most recent events kept in memory per refresh


class DeployEventIn(BaseModel):
    """What a pipeline posts: ``at`` defaults to now; tags select the checks it concerns."""

    model_config = {"extra": "forbid"}

    service: str = Field(min_length=1, max_length=200, description="what was deployed, e.g. web")
    version: str = Field(min_length=1, max_length=200, description="e.g. 1.4.2 or a commit")
    by: str = Field("", max_length=200, description="who or what deployed, e.g. ci")
    at: datetime | float | None = Field(
        None, description="when (ISO 8601 or unix seconds); default: now"
    )
    tags: list[str] = Field(
        default_factory=list, max_length=50, description="check tags this deploy concerns"
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag or len(tag) > 100:
                raise ValueError("each tag must be 1-100 characters")
        return value

    @field_validator("at")
    @classmethod
    def _at(cls, value: datetime | float | None) -> datetime | float | None:
        if value is None:
            return None
        ts = _as_timestamp(value)
        if not 0 <= ts <= LATEST:  # also rejects NaN and infinities
            raise ValueError("at must be between 1970-01-01 and 9999-12-31")
        return value

    def timestamp(self, now: float) -> float:
        return now if self.at is None else _as_timestamp(self.at)


LATEST = 253402300799.0  # 9999-12-31T23:59:59Z, the last date Elasticsearch's date type reads


def _as_timestamp(value: datetime | float) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class DeployEvent(BaseModel):
    """A deploy as the API shows it."""

    id: str
    service: str
    version: str
    by: str
    at: float
    at_iso: str
    tags: list[str]
    source: str = Field(description="the index it was read from")

    def matches(self, check_tags: Iterable[str]) -> bool:
        """A deploy concerns a check when one of its tags (or its service) is a check tag."""
        wanted = set(check_tags)
        return bool(wanted & {*self.tags, self.service})

    @property
    def label(self) -> str:
        who = f" by {self.by}" if self.by else ""
        return f"deploy {self.service} {self.version}{who}"


class AfterDeploy(BaseModel):
    """On a transition: the deploy of a matching tag that preceded it within the window."""

    event: DeployEvent
    seconds_after: float
    text: str = Field(description='e.g. "started 2 min after deploy web 1.4.2 by ci"')


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def after_text(seconds: float) -> str:
    """``42 s``, ``2 min``, ``1 h 5 min``: how people say it on the status page."""
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")


def after_deploy(
    events: Iterable[DeployEvent], check_tags: Iterable[str], at: float, within: float
) -> AfterDeploy | None:
    """The latest matching deploy at most ``within`` seconds before ``at``, if any."""
    tags = list(check_tags)
    best: DeployEvent | None = None
    for event in events:
        recent = event.at <= at and at - event.at <= within
        if recent and event.matches(tags) and (best is None or event.at > best.at):
            best = event
    if best is None:
        return None
    lag = at - best.at
    return AfterDeploy(
        event=best,
        seconds_after=round(lag, 3),
        text=f"started {after_text(lag)} after {best.label}",
    )


def _get(doc: dict[str, Any], path: str) -> Any:
    """A field by dotted path (``service.name``), in nested objects or a flat key."""
    if path in doc:
        return doc[path]
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # millis or seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def event_from_source(
    doc_id: str, source: dict[str, Any], index: str, fields: dict[str, str]
) -> DeployEvent | None:
    """One stored document → event; None when it lacks a service or a readable time (one
    record in microseconds, or year 50000, must not stop every other event being read)."""
    at = _timestamp(_get(source, fields["at"]))
    service = _get(source, fields["service"])
    if at is None or service in (None, ""):
        return None
    try:
        at_iso = iso(at)
    except (ValueError, OverflowError, OSError):  # beyond what a date can be
        return None
    tags = _get(source, fields["tags"]) or []
    if isinstance(tags, str):
        tags = [tags]
    return DeployEvent(
        id=doc_id,
        service=str(service),
        version=str(_get(source, fields["version"]) or ""),
        by=str(_get(source, fields["by"]) or ""),
        at=at,
        at_iso=at_iso,
        tags=[str(t) for t in tags],
        source=index,
    )


OWN_FIELDS = {"service": "service", "version": "version", "by": "by", "at": "at", "tags": "tags"}


class EventStore:
    """The events index (write + read) and the in-memory copy of recent events."""

    def __init__(self, config: EventsConfig, connection: Connection, timeout: float = 10.0) -> None:
        self.config = config
        self.connection = connection
        self.timeout = timeout
        self.events: list[DeployEvent] = []  # oldest first
        self.last_refresh: float = 0.0
        self.error: str | None = None
        # Recorded here lately: kept through a refresh whose search ran before the write.
        self._local: list[tuple[float, DeployEvent]] = []

    async def ensure_index(self) -> None:
        """Create the events index with its explicit mapping unless it exists.

        Called before every write: deploys are rare, and a deleted index must come back with
        the mapping, not be re-created by a write with guessed (dynamic) field types.
        """
        await self.connection.create_index(self.config.index, EVENTS_MAPPING, self.timeout)

    async def record(self, event: DeployEventIn, now: float | None = None) -> DeployEvent:
        """Write one event, searchable on return (``refresh=true``: deploys are rare)."""
        now = time.time() if now is None else now
        at = event.timestamp(now)
        doc_id = uuid.uuid4().hex
        await self.ensure_index()
        body = {
            "service": event.service,
            "version": event.version,
            "by": event.by,
            "at": int(at * 1000),
            "tags": event.tags,
            "recorded_at": int(now * 1000),
        }
        await self.connection.raw(
            "PUT", f"/{self.config.index}/_doc/{doc_id}?refresh=true", body, self.timeout
        )
        stored = event_from_source(doc_id, body, self.config.index, OWN_FIELDS)
        assert stored is not None
        self._local.append((time.monotonic(), stored))
        self._merge([stored])
        return stored

    async def refresh(self, now: float | None = None) -> list[DeployEvent]:
        """Read the events of the last ``events.keep`` from every events index. Never raises."""
        now = time.time() if now is None else now
        oldest = now - self.config.keep.total_seconds()
        sources = [(self.config.index, OWN_FIELDS)]
        if self.config.pipeline is not None:
            sources.append((self.config.pipeline.index, self.config.pipeline.fields.as_dict()))
        found: list[DeployEvent] = []
        errors = []
        for index, fields in sources:
            query = {
                "size": MAX_EVENTS,
                "sort": [{fields["at"]: {"order": "desc", "unmapped_type": "date"}}],
                "query": {
                    "range": {fields["at"]: {"gte": int(oldest * 1000), "format": "epoch_millis"}}
                },
            }
            try:
                answer = await self.connection.raw(
                    "POST", f"/{index}/_search?ignore_unavailable=true", query, self.timeout
                )
            except ESError as error:
                errors.append(f"events index {index}: {error}")
                continue
            for hit in (answer.get("hits") or {}).get("hits") or []:
                event = event_from_source(
                    str(hit.get("_id")), hit.get("_source") or {}, index, fields
                )
                if event is not None:
                    found.append(event)
        if errors:
            if self.error is None:
                log.warning("cannot read deploy events: %s", "; ".join(errors))
            self.error = "; ".join(errors)
            if len(errors) == len(sources):
                return self.events  # keep what we had
        else:
            self.error = None
        cutoff = time.monotonic() - 60.0
        self._local = [(t, e) for t, e in self._local if t > cutoff]
        self.events = []
        self._merge([*found, *(e for _, e in self._local)])
        self.last_refresh = now
        return self.events

    def _merge(self, new: list[DeployEvent]) -> None:
        """Add events, once each (an event read back and also recorded here is one event)."""
        by_id = {(e.source, e.id): e for e in [*self.events, *new]}
        self.events = sorted(by_id.values(), key=lambda e: e.at)

    def matching(
        self, check_tags: Iterable[str], start: float = 0.0, end: float = float("inf")
    ) -> list[DeployEvent]:
        tags = list(check_tags)
        return [e for e in self.events if start <= e.at <= end and e.matches(tags)]

    def after_deploy(self, check_tags: Iterable[str], at: float) -> AfterDeploy | None:
        return after_deploy(self.events, check_tags, at, self.config.within.total_seconds())
