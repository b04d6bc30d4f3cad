"""Service configuration: a YAML file, ``ESBRIDGE_*`` environment variables, overrides.

Precedence (highest first): keyword overrides of ``load_settings`` (command line), the
environment (``ESBRIDGE_PORT=9200``, nested with ``__``: ``ESBRIDGE_STATE__HISTORY=10``,
``ESBRIDGE_ELASTICSEARCH__DEFAULT__URLS=https://es1:9200,https://es2:9200``), the file,
the defaults below. Secrets are ``SecretStr`` so they never print; prefer the ``*_file``
variants or the environment to plain text in the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from esbridge.durations import Duration, format_duration

if TYPE_CHECKING:
    from esbridge.loader import CheckSet, Issue

__all__ = [
    "ApiConfig",
    "ConfigError",
    "ConnectionConfig",
    "DefaultsConfig",
    "Icinga2PassiveConfig",
    "LogConfig",
    "NagiosPassiveConfig",
    "PassiveGroupsConfig",
    "Settings",
    "StateStoreConfig",
    "load_settings",
    "validate_references",
]


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


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConnectionConfig(_Section):
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

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("urls must name at least one node")
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return tuple(url.rstrip("/") for url in value)

    @model_validator(mode="after")
    def _one_source_each(self) -> ConnectionConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both")
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
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return _read_secret(self.password_file, "password_file")
        return None

    def resolved_api_key(self) -> str | None:
        """The API key (base64 ``id:key`` form), read from ``api_key_file`` when set."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is not None:
            return _read_secret(self.api_key_file, "api_key_file")
        return None


class StateStoreConfig(_Section):
    """Where results survive a restart (an Elasticsearch index)."""

    enabled: bool = True
    connection: str = "default"
    index: str = "esbridge-state"
    history: int = Field(50, ge=0, le=10000)
    flush_interval: Duration = timedelta(seconds=2)
    # Primary shards of the state index when esbridge creates it: every evaluation writes its
    # check's document, so large sites spread that write load (docs/scale-out.md, sizing).
    shards: int = Field(1, ge=1, le=64)


class EventFieldsConfig(_Section):
    """Where a pipeline's own deploy records keep each field (dotted paths allowed)."""

    service: str = "service"
    version: str = "version"
    by: str = "by"
    at: str = "@timestamp"
    tags: str = "tags"

    def as_dict(self) -> dict[str, str]:
        return self.model_dump()


class PipelineEventsConfig(_Section):
    """Deploy records a pipeline already writes to an index of its own (read only)."""

    index: str = Field(min_length=1)
    fields: EventFieldsConfig = Field(default_factory=EventFieldsConfig)


class EventsConfig(_Section):
    """Deploy events (``POST /api/v1/events``) and how transitions are linked to them."""

    enabled: bool = True
    # None: the state store's connection (or the first one, when that is not defined)
    connection: str | None = None
    index: str = "esbridge-events"
    pipeline: PipelineEventsConfig | None = None
    within: Duration = timedelta(minutes=15)  # a transition this soon after a deploy names it
    keep: Duration = timedelta(days=7)  # how far back each esbridge reads events
    refresh_interval: Duration = timedelta(seconds=5)


class ClusterConfig(_Section):
    """Several replicas sharing the checks through the state store (docs/scale-out.md)."""

    enabled: bool = False
    # Unique per process, stable across its restarts; empty: $POD_NAME, else host name:port.
    replica_id: str = Field("", max_length=200)
    index: str = "esbridge-members"
    heartbeat: Duration = timedelta(seconds=5)
    lease: Duration = timedelta(seconds=15)
    # How often the results of checks owned elsewhere are read; empty: every heartbeat.
    view_refresh: Duration | None = None

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


class ApiConfig(_Section):
    """Who may use the HTTP API."""

    token: SecretStr | None = None
    token_file: Path | None = None
    require_token_for_reads: bool = False
    allow_unauthenticated_writes: bool = False

    @model_validator(mode="after")
    def _token(self) -> ApiConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        if self.require_token_for_reads and self.token is None and self.token_file is None:
            raise ValueError("require_token_for_reads needs token or token_file")
        return self

    def resolved_token(self) -> str | None:
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            return _read_secret(self.token_file, "token_file")
        return None


class PreviewConfig(_Section):
    """Bounds of ``GET /api/v1/checks/{name}/preview`` (the backtest of a check)."""

    max_points: int = Field(1500, ge=10, le=100_000)
    max_concurrent: int = Field(2, ge=1, le=64)
    timeout: Duration = timedelta(seconds=30)


class DefaultsConfig(_Section):
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


class LogConfig(_Section):
    format: Literal["text", "json"] = "text"
    level: str = "INFO"

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}: use debug, info, warning or error")
        return level


# --- passive delivery (esbridge.passive) -----------------------------------------------------

_TEMPLATE_FIELDS = {"check", "labels"}
_GROUP_TEMPLATE_FIELDS = {"check", "labels", "group", "group_label", "group_key"}


def _check_template(text: str, allowed: set[str], what: str) -> str:
    """Fail at load time on a template that could never render (typo in a field name)."""
    import string

    if not text.strip():
        raise ValueError(f"{what} must not be empty")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{what} {text!r} is not a valid template: {exc}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = field.split("[", 1)[0].split(".", 1)[0]
        if root not in allowed:
            raise ValueError(
                f"{what} {text!r} uses {{{field}}}: known fields are "
                + ", ".join(f"{{{f}}}" for f in sorted(allowed))
            )
    return text


class PassiveGroupsConfig(_Section):
    """Each group of a grouped check as its own service (e.g. one per web host)."""

    host: str = "{group[host]}"
    service: str = "{check}"

    @field_validator("host", "service")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value, _GROUP_TEMPLATE_FIELDS, "template")


class _PassiveTarget(_Section):
    """Settings every passive target shares: naming, when to send, queueing."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    enabled: bool = True
    host: str = "esbridge"
    service: str = "{check}"
    checks: StrList = ("*",)
    exclude: StrList = ()
    groups: PassiveGroupsConfig | None = None
    send_overall: bool = True
    when: Literal["every", "change"] = "every"
    heartbeat: Duration = timedelta(minutes=5)
    ttl_factor: float = Field(2.0, ge=1.0, le=100.0)
    queue_size: int = Field(10000, ge=1, le=1_000_000)
    concurrency: int = Field(4, ge=1, le=64)
    retries: int = Field(3, ge=0, le=100)
    backoff: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(seconds=60)
    timeout: Duration = timedelta(seconds=10)

    @field_validator("host", "service")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value, _TEMPLATE_FIELDS, "template")

    @model_validator(mode="after")
    def _timing(self) -> _PassiveTarget:
        if self.backoff <= timedelta(0) or self.backoff > self.backoff_max:
            raise ValueError("backoff must be > 0s and at most backoff_max")
        if self.timeout <= timedelta(0):
            raise ValueError("timeout must be longer than 0s")
        if self.heartbeat < timedelta(seconds=1):
            raise ValueError("heartbeat must be at least 1s")
        if not self.send_overall and self.groups is None:
            raise ValueError("send_overall: false needs a groups section (nothing would be sent)")
        return self


class Icinga2PassiveConfig(_PassiveTarget):
    """Icinga 2 REST API: ``POST /v1/actions/process-check-result``."""

    type: Literal["icinga2"]
    url: str
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    ca_certs: Path | None = None
    verify: bool = True
    check_source: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_password(self) -> Icinga2PassiveConfig:
        sources = [self.password, self.password_file, self.password_env]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("set exactly one of password, password_file, password_env")
        return self

    def resolved_password(self) -> str:
        """The API user's password from the file, the environment or the setting."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return _read_secret(self.password_file, "password_file")
        assert self.password_env is not None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"passive target {self.name!r}: ${self.password_env} is not set")
        return value


class NagiosPassiveConfig(_PassiveTarget):
    """Nagios / Icinga 1 / Naemon external command file (a named pipe)."""

    type: Literal["nagios"]
    command_file: Path
    concurrency: int = Field(1, ge=1, le=1)


PassiveTarget = Annotated[Icinga2PassiveConfig | NagiosPassiveConfig, Field(discriminator="type")]


_FILE_DATA: ContextVar[dict[str, Any] | None] = ContextVar("esbridge_config_file", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The already-parsed YAML file (set by ``load_settings``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _FILE_DATA.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get() or {})


class Settings(BaseSettings):
    """Everything the service needs besides the check files."""

    model_config = SettingsConfigDict(
        env_prefix="ESBRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(9108, ge=1, le=65535)
    checks: StrList = ("checks",)
    elasticsearch: dict[str, ConnectionConfig] = Field(
        default_factory=lambda: {"default": ConnectionConfig()}
    )
    state: StateStoreConfig = Field(default_factory=StateStoreConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    preview: PreviewConfig = Field(default_factory=PreviewConfig)
    passive: list[PassiveTarget] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @field_validator("elasticsearch")
    @classmethod
    def _some_connection(cls, value: dict[str, ConnectionConfig]) -> dict[str, ConnectionConfig]:
        if not value:
            raise ValueError("define at least one connection (e.g. 'default')")
        return value

    @model_validator(mode="after")
    def _state_connection(self) -> Settings:
        if self.state.enabled and self.state.connection not in self.elasticsearch:
            raise ValueError(
                f"state.connection {self.state.connection!r} is not a connection in "
                f"elasticsearch (have: {', '.join(self.elasticsearch)})"
            )
        if self.cluster.enabled and not self.state.enabled:
            raise ValueError("cluster.enabled needs state.enabled: replicas share the state index")
        return self

    def events_connection(self) -> str:
        """``events.connection``, else the state store's, else the first connection."""
        if self.events.connection is not None:
            return self.events.connection
        if self.state.connection in self.elasticsearch:
            return self.state.connection
        return next(iter(self.elasticsearch))

    @model_validator(mode="after")
    def _events_connection(self) -> Settings:
        wanted = self.events.connection
        if self.events.enabled and wanted is not None and wanted not in self.elasticsearch:
            raise ValueError(
                f"events.connection {self.events.connection!r} is not a connection in "
                f"elasticsearch (have: {', '.join(self.elasticsearch)})"
            )
        return self

    @field_validator("passive")
    @classmethod
    def _unique_targets(cls, value: list[Any]) -> list[Any]:
        names = [t.name for t in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"passive target names must be unique: {', '.join(twice)}")
        return value


# fields whose relative paths mean "relative to the config file"
_PATH_FIELDS = ("password_file", "api_key_file", "ca_certs")
_PASSIVE_PATH_FIELDS = ("password_file", "ca_certs", "command_file")


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (optional), then the environment, then ``overrides``.

    Relative paths in the file (``checks``, ``*_file``, ``ca_certs``) resolve against the
    file's folder. Raises ``ConfigError`` naming the file, the field and the line.
    """
    file_label = str(path) if path is not None else "<environment>"
    doc: Any = None
    data: dict[str, Any] = {}
    if path is not None:
        from esbridge.loader import to_plain  # the same YAML reading rules as check files

        doc = _read_yaml(Path(path))
        data = _resolve_paths(to_plain(doc), Path(path).resolve().parent)
    token = _FILE_DATA.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        messages = []
        for error in exc.errors(include_url=False):
            loc = tuple(error.get("loc", ()))
            field = ".".join(str(p) for p in loc)
            line = _path_line(doc, loc) if doc is not None else None
            where = f"{file_label}:{line}" if line else file_label
            env_name = "ESBRIDGE_" + "__".join(str(p) for p in loc).upper()
            if line is None and loc and env_name in os.environ:
                where = f"environment {env_name}"
            text = str(error.get("msg", "invalid value"))
            for prefix in ("Value error, ", "Assertion failed, "):
                text = text.removeprefix(prefix)
            if text.startswith("Input should be"):
                text = "should be" + text.removeprefix("Input should be")
            if error.get("type") == "extra_forbidden":
                text = "unknown setting" + _did_you_mean(loc, exc.title)
            elif error.get("type") == "missing":
                text = "missing required setting"
            messages.append(f"{where}: field '{field}': {text}" if field else f"{where}: {text}")
        raise ConfigError(messages) from None
    except ConfigError:
        raise
    except Exception as exc:  # pydantic-settings SettingsError (bad env JSON) and friends
        raise ConfigError(f"{file_label}: {exc}") from None
    finally:
        _FILE_DATA.reset(token)


def validate_references(settings: Settings, checkset: CheckSet) -> list[Issue]:
    """Problems between settings and checks: a check's ``cluster`` must be a connection."""
    from esbridge.loader import Issue

    issues = []
    for check in checkset:
        if check.cluster not in settings.elasticsearch:
            issues.append(
                Issue(
                    file=check.source_file or "<checks>",
                    check=check.name,
                    field="cluster",
                    line=check.source_line,
                    message=(
                        f"no elasticsearch connection named {check.cluster!r} in the "
                        f"configuration (have: {', '.join(settings.elasticsearch)})"
                    ),
                )
            )
    issues.extend(_passive_problems(settings, checkset))
    return issues


def _passive_problems(settings: Settings, checkset: CheckSet) -> list[Issue]:
    """Passive targets: secrets readable, CA bundle present, check patterns match something."""
    import fnmatch

    from esbridge.loader import Issue

    issues = []
    names = [check.name for check in checkset]
    for index, target in enumerate(settings.passive):

        def issue(field: str, message: str, index: int = index) -> Issue:
            return Issue("<config>", None, f"passive.{index}.{field}", None, message)

        if isinstance(target, Icinga2PassiveConfig):
            try:
                target.resolved_password()
            except ConfigError as exc:
                field = "password_file" if target.password_file else "password_env"
                issues.append(issue(field, str(exc)))
            if target.ca_certs is not None and not target.ca_certs.is_file():
                issues.append(issue("ca_certs", f"no such file: {target.ca_certs}"))
        else:
            folder = target.command_file.parent
            if not folder.is_dir():
                issues.append(issue("command_file", f"folder {folder} does not exist"))
        for pattern in target.checks:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                issues.append(issue("checks", f"pattern {pattern!r} matches no check"))
    return issues


# --- helpers ---------------------------------------------------------------------------------


def _read_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from None
    from esbridge.loader import yaml_shape_issue  # the check files' limits apply here too

    try:
        shape = yaml_shape_issue(str(path), text)
        if shape is not None:
            raise ConfigError(str(shape))
        doc = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}:1: expected a mapping of settings at the top level")
    return doc


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base / value)
        return value

    checks = data.get("checks")
    if isinstance(checks, str):
        data["checks"] = [resolve(checks)]
    elif isinstance(checks, list):
        data["checks"] = [resolve(c) for c in checks]
    connections = data.get("elasticsearch")
    if isinstance(connections, dict):
        for conn in connections.values():
            if isinstance(conn, dict):
                for key in _PATH_FIELDS:
                    if key in conn:
                        conn[key] = resolve(conn[key])
    passive = data.get("passive")
    if isinstance(passive, list):
        for target in passive:
            if isinstance(target, dict):
                for key in _PASSIVE_PATH_FIELDS:
                    if key in target:
                        target[key] = resolve(target[key])
    api = data.get("api")
    if isinstance(api, dict) and "token_file" in api:
        api["token_file"] = resolve(api["token_file"])
    return data


def _path_line(node: Any, loc: tuple[Any, ...]) -> int | None:
    line = None
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            with contextlib.suppress(AttributeError, KeyError, TypeError):
                line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            with contextlib.suppress(AttributeError, KeyError, TypeError, IndexError):
                line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _did_you_mean(loc: tuple[Any, ...], _title: str) -> str:
    import difflib

    models: dict[str, type[BaseModel]] = {
        "state": StateStoreConfig,
        "api": ApiConfig,
        "defaults": DefaultsConfig,
        "log": LogConfig,
    }
    name = str(loc[-1]) if loc else ""
    if len(loc) == 1:
        choices = list(Settings.model_fields)
    elif loc[0] == "elasticsearch":
        choices = list(ConnectionConfig.model_fields)
    elif loc[0] == "passive" and len(loc) >= 3:
        choices = [
            *Icinga2PassiveConfig.model_fields,
            *NagiosPassiveConfig.model_fields,
            *PassiveGroupsConfig.model_fields,
        ]
    elif loc[0] in models:
        choices = list(models[str(loc[0])].model_fields)
    else:
        choices = []
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
