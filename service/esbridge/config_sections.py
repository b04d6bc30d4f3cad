"""The sections of the service configuration (connections, state store, cluster, events,
API, preview, defaults, logging), each a frozen pydantic model refusing unknown keys.

``config.Settings`` puts them together and reads them from the file and the environment.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from esbridge.durations import Duration, format_duration
from esbridge.limits import check_node_url


class ConfigError(Exception):
    """The configuration is invalid; ``messages`` holds one line per problem."""

    def __init__(self, messages: str | list[str]) -> None:
        self.messages: list[str] = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)


def _list(value: Any) -> Any:
    """``a,b`` or ``["a", "b"]`` (JSON) from the environment; lists from YAML."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return value


StrList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_list)]


def read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def resolve_secret(value: SecretStr | None, file: Path | None, field: str) -> str | None:
    """A secret set inline (``field``) or in a file (``field_file``); None when neither is."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return read_secret(file, f"{field}_file")
    return None


def one_source(value: SecretStr | None, file: Path | None, field: str) -> None:
    """Refuse a secret set both inline and in a file: which one wins would be a guess."""
    if value is not None and file is not None:
        raise ValueError(f"set {field} or {field}_file, not both")


class Section(BaseModel):
    """A part of the configuration: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConnectionConfig(Section):
    """One Elasticsearch or OpenSearch cluster (checks pick it with ``cluster:``)."""

    urls: StrList = ("http://127.0.0.1:9200",)
    # auto: the first request finds out (and logs) which product answers; an explicit
    # flavor is checked against the server the same way and refused when it differs.
    flavor: Literal["auto", "elasticsearch", "opensearch"] = "auto"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout: Duration = timedelta(seconds=10)
    max_retries: int = Field(2, ge=0, le=10)
    max_searches_per_request: int = Field(200, ge=1, le=10000)
    max_in_flight: int = Field(4, ge=1, le=256)
    # Checks that share indices, time range and aggregations go out as one search with a
    # ``filters`` aggregation (docs/configuration.md, "Merged searches").
    merge_searches: bool = True

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("urls must name at least one node")
        return tuple(check_node_url(url).rstrip("/") for url in value)

    @model_validator(mode="after")
    def _one_source_each(self) -> ConnectionConfig:
        one_source(self.password, self.password_file, "password")
        one_source(self.api_key, self.api_key_file, "api_key")
        has_password = self.password is not None or self.password_file is not None
        has_api_key = self.api_key is not None or self.api_key_file is not None
        if has_password and self.username is None:
            raise ValueError("a password needs a username")
        if has_password and has_api_key:
            raise ValueError("use either username/password or api_key, not both")
        if has_api_key and self.flavor == "opensearch":
            raise ValueError("OpenSearch has no API keys: use username and password")
        return self

    def resolved_password(self) -> str | None:
        """The password, read from ``password_file`` when that is set."""
        return resolve_secret(self.password, self.password_file, "password")

    def resolved_api_key(self) -> str | None:
        """The API key (base64 ``id:key`` form), read from ``api_key_file`` when set."""
        return resolve_secret(self.api_key, self.api_key_file, "api_key")


class StateStoreConfig(Section):
    """Where results survive a restart (an Elasticsearch index)."""

    enabled: bool = True
    connection: str = "default"
    index: str = "esbridge-state"
    history: int = Field(50, ge=0, le=10000)
    flush_interval: Duration = timedelta(seconds=2)
    # Primary shards of the state index when esbridge creates it: every evaluation writes its
    # check's document, so large sites spread that write load (docs/scale-out.md, sizing).
    shards: int = Field(1, ge=1, le=64)
    # Replicas write a check's document when its answer changes, and at least this often
    # (docs/scale-out.md, "Write on change"): what the index says of a check once no replica
    # runs it is never older than this. A single instance writes every run.
    rewrite_after: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _rewrite_after(self) -> StateStoreConfig:
        if self.rewrite_after < timedelta(minutes=1):
            raise ValueError(
                "state.rewrite_after must be at least 1m: it is how often a document whose "
                "answer did not change is written again, and shorter is little better than "
                "writing every run"
            )
        return self


class EventFieldsConfig(Section):
    """Where a pipeline's own deploy records keep each field (dotted paths allowed)."""

    service: str = "service"
    version: str = "version"
    by: str = "by"
    at: str = "@timestamp"
    tags: str = "tags"

    def as_dict(self) -> dict[str, str]:
        return self.model_dump()


class PipelineEventsConfig(Section):
    """Deploy records a pipeline already writes to an index of its own (read only)."""

    index: str = Field(min_length=1)
    fields: EventFieldsConfig = Field(default_factory=EventFieldsConfig)


class EventsConfig(Section):
    """Deploy events (``POST /api/v1/events``) and how transitions are linked to them."""

    enabled: bool = True
    # None: the state store's connection (or the first one, when that is not defined)
    connection: str | None = None
    index: str = "esbridge-events"
    pipeline: PipelineEventsConfig | None = None
    within: Duration = timedelta(minutes=15)  # a transition this soon after a deploy names it
    keep: Duration = timedelta(days=7)  # how far back each esbridge reads events
    refresh_interval: Duration = timedelta(seconds=5)


class ClusterConfig(Section):
    """Several replicas sharing the checks through the state store (docs/scale-out.md)."""

    enabled: bool = False
    # Unique per process, stable across its restarts; empty: $POD_NAME, else host name:port.
    replica_id: str = Field("", max_length=200)
    index: str = "esbridge-members"
    heartbeat: Duration = timedelta(seconds=5)
    lease: Duration = timedelta(seconds=15)
    # How often the results of checks owned elsewhere are read; empty: every heartbeat.
    view_refresh: Duration | None = None
    # Where other replicas and scripts reach this one (owner_url of a 409 "run it there");
    # empty: http://<host>:<port>, a wildcard host (0.0.0.0) replaced by $POD_IP or the
    # machine's name, so the address is never one that points back at the caller.
    advertise_url: str = Field("", max_length=2000)

    @field_validator("advertise_url")
    @classmethod
    def _advertise_url(cls, value: str) -> str:
        return check_node_url(value).rstrip("/") if value else value

    @model_validator(mode="after")
    def _lease_longer(self) -> ClusterConfig:
        if self.heartbeat.total_seconds() <= 0:
            raise ValueError("cluster.heartbeat must be positive")
        if self.lease <= self.heartbeat * 2:
            raise ValueError(
                "cluster.lease must be more than twice cluster.heartbeat, or one late "
                "heartbeat drops a live replica"
            )
        return self


class ApiConfig(Section):
    """Who may use the HTTP API."""

    token: SecretStr | None = None
    token_file: Path | None = None
    require_token_for_reads: bool = False
    allow_unauthenticated_writes: bool = False

    @model_validator(mode="after")
    def _token(self) -> ApiConfig:
        one_source(self.token, self.token_file, "token")
        if self.require_token_for_reads and self.token is None and self.token_file is None:
            raise ValueError("require_token_for_reads needs token or token_file")
        return self

    # the token as read by the first resolved_token(): (token,) once read, None before
    _resolved: tuple[str | None] | None = PrivateAttr(default=None)

    def resolved_token(self) -> str | None:
        """The API token, read once: the first call reads ``token_file`` (``ConfigError``,
        naming the file, when it cannot), every later call answers from memory. The app
        calls it when it is built (at start), so requests never touch the file: a rotated
        token file takes effect at the next restart."""
        if self._resolved is None:
            self._resolved = (resolve_secret(self.token, self.token_file, "token"),)
        return self._resolved[0]


class PreviewConfig(Section):
    """Bounds of ``GET /api/v1/checks/{name}/preview`` (the backtest of a check)."""

    max_points: int = Field(1500, ge=10, le=100_000)
    max_concurrent: int = Field(2, ge=1, le=64)
    timeout: Duration = timedelta(seconds=30)


class DefaultsConfig(Section):
    """Service-wide defaults for checks that do not set their own."""

    interval: Duration = timedelta(seconds=60)
    timeout: Duration = timedelta(seconds=10)
    staleness_factor: float = Field(2.0, gt=1)

    @model_validator(mode="after")
    def _timeout(self) -> DefaultsConfig:
        if not timedelta(seconds=1) <= self.interval <= timedelta(days=7):
            raise ValueError("interval must be between 1s and 7d")
        if self.timeout <= timedelta(0) or self.timeout > self.interval:
            raise ValueError(
                f"timeout {format_duration(self.timeout)} must be longer than 0s and at most "
                f"the interval {format_duration(self.interval)}"
            )
        return self


class LogConfig(Section):
    format: Literal["text", "json"] = "text"
    level: str = "INFO"

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}: use debug, info, warning or error")
        return level
