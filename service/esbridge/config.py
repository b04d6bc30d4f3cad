"""Service configuration: a YAML file, ``ESBRIDGE_*`` environment variables, overrides.

Precedence (highest first): keyword overrides of ``load_settings`` (command line), the
environment (``ESBRIDGE_PORT=9200``, nested with ``__``: ``ESBRIDGE_STATE__HISTORY=10``,
``ESBRIDGE_ELASTICSEARCH__DEFAULT__URLS=https://es1:9200,https://es2:9200``), the file,
the defaults below. Secrets are ``SecretStr`` so they never print; prefer the ``*_file``
variants or the environment to plain text in the file.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from esbridge.config_passive import (
    Icinga2PassiveConfig,
    NagiosPassiveConfig,
    PassiveGroupsConfig,
    PassiveTarget,
)
from esbridge.config_sections import (
    ApiConfig,
    ClusterConfig,
    ConfigError,
    ConnectionConfig,
    DefaultsConfig,
    EventFieldsConfig,
    EventsConfig,
    LogConfig,
    PipelineEventsConfig,
    PreviewConfig,
    StateStoreConfig,
    StrList,
)
from esbridge.yamldoc import Issue, did_you_mean, parse_yaml, path_line, sentence, to_plain

__all__ = [
    "ApiConfig",
    "ClusterConfig",
    "ConfigError",
    "ConnectionConfig",
    "DefaultsConfig",
    "EventFieldsConfig",
    "EventsConfig",
    "Icinga2PassiveConfig",
    "LogConfig",
    "NagiosPassiveConfig",
    "PassiveGroupsConfig",
    "PassiveTarget",
    "PipelineEventsConfig",
    "PreviewConfig",
    "Settings",
    "StateStoreConfig",
    "load_settings",
    "validate_references",
]


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
    # where the settings were read, for problems found after loading (passive targets)
    _file_label: str = PrivateAttr("<environment>")
    _doc: Any = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The configuration file these settings were read from (None: none)."""
        return None if self._doc is None else Path(self._file_label)

    def where(self, *loc: str | int) -> tuple[str, int | None]:
        """The file and line of the setting at ``loc`` (line None: not from the file)."""
        line = path_line(self._doc, loc) if self._doc is not None else None
        return self._file_label, line

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
        doc = _read_yaml(Path(path))
        data = _resolve_paths(to_plain(doc), Path(path).resolve().parent)
    token = _FILE_DATA.set(data)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            [_message(error, doc, file_label) for error in exc.errors(include_url=False)]
        ) from None
    except ConfigError:
        raise
    except Exception as exc:  # pydantic-settings SettingsError (bad env JSON) and friends
        raise ConfigError(f"{file_label}: {exc}") from None
    finally:
        _FILE_DATA.reset(token)
    settings._file_label, settings._doc = file_label, doc
    return settings


class CheckRef(Protocol):
    """What reference checks need of a check (``models.CheckBase`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def cluster(self) -> str: ...
    @property
    def source_file(self) -> str | None: ...
    @property
    def source_line(self) -> int | None: ...


def validate_references(
    settings: Settings, checkset: Collection[CheckRef], passive: bool = True
) -> list[Issue]:
    """Problems between settings and checks: a check's ``cluster`` must be a connection.

    ``passive``: also the passive targets and the API token file (at start; a reload of the
    check files skips them).
    """
    issues = []
    for check in checkset:
        if check.cluster not in settings.elasticsearch:
            message = (
                f"no elasticsearch connection named {check.cluster!r} in the configuration "
                f"(have: {', '.join(settings.elasticsearch)})"
            )
            issues.append(_issue(check, "cluster", message))
            continue
        issues.extend(_clear_text_credentials(settings, check))
    if passive:
        issues.extend(_passive_problems(settings, checkset))
        issues.extend(_api_token_problems(settings))
    return issues


def _api_token_problems(settings: Settings) -> list[Issue]:
    """At start: the API token file must be readable. This reads it, once: the service keeps
    the token in memory (``ApiConfig.resolved_token``) and never reads the file again."""
    try:
        settings.api.resolved_token()
    except ConfigError as exc:
        file, line = settings.where("api", "token_file")
        return [Issue(file, None, "api.token_file", line, str(exc))]
    return []


def _clear_text_credentials(settings: Settings, check: CheckRef) -> list[Issue]:
    """A ``master`` check asks each node with its connection's credentials: never over plain
    http when the connection itself has credentials and uses https."""
    connection = settings.elasticsearch[check.cluster]
    secured = connection.username or connection.password or connection.password_file
    secured = secured or connection.api_key or connection.api_key_file
    if not secured or not all(url.startswith("https://") for url in connection.urls):
        return []
    return [
        _issue(
            check,
            "node_urls",
            f"{url!r} is plain http, but connection {check.cluster!r} sends credentials "
            "over https only: use https:// (the node is asked with those credentials)",
        )
        for url in getattr(check, "node_urls", ())
        if url.startswith("http://")
    ]


def _issue(check: CheckRef, field: str, message: str) -> Issue:
    """A problem of one check's ``field``, located in its file."""
    return Issue(check.source_file or "<checks>", check.name, field, check.source_line, message)


def _passive_problems(settings: Settings, checkset: Collection[CheckRef]) -> list[Issue]:
    """Passive targets: secrets readable, CA bundle present, check patterns match something."""
    issues = []
    names = [check.name for check in checkset]
    for index, target in enumerate(settings.passive):

        def issue(field: str, message: str, index: int = index) -> Issue:
            file, line = settings.where("passive", index, field)
            return Issue(file, None, f"passive.{index}.{field}", line, message)

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
    """The file's round-trip document (keeps lines), under the check files' YAML limits."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from None
    doc, problem = parse_yaml(str(path), text)
    if problem is not None:
        raise ConfigError(str(problem))
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}:1: expected a mapping of settings at the top level")
    return doc


_SECRET_FIELDS = ("password", "api_key", "token")


def _message(error: Mapping[str, Any], doc: Any, file_label: str) -> str:
    """One pydantic error as ``<file>:<line>: field 'a.b': <sentence>`` (or the env name)."""
    loc = tuple(error.get("loc", ()))
    field = ".".join(str(p) for p in loc)
    line = path_line(doc, loc) if doc is not None else None
    where = f"{file_label}:{line}" if line else file_label
    env_name = "ESBRIDGE_" + "__".join(str(p) for p in loc).upper()
    if line is None and loc and env_name in os.environ:
        where = f"environment {env_name}"
    if error.get("type") == "extra_forbidden":
        text = "unknown setting" + did_you_mean(str(loc[-1]) if loc else "", _choices(loc))
    elif error.get("type") == "missing":
        text = "missing required setting"
    else:
        # a secret given with the wrong type (password: 12345) must not be echoed
        text = sentence(error, show_value=not (loc and loc[-1] in _SECRET_FIELDS))
    return f"{where}: field '{field}': {text}" if field else f"{where}: {text}"


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


def _choices(loc: tuple[Any, ...]) -> list[str]:
    """The settings that exist where ``loc`` points (for "did you mean")."""
    models: dict[str, type[BaseModel]] = {
        "state": StateStoreConfig,
        "api": ApiConfig,
        "defaults": DefaultsConfig,
        "log": LogConfig,
        "cluster": ClusterConfig,
        "events": EventsConfig,
        "preview": PreviewConfig,
    }
    if len(loc) == 1:
        return list(Settings.model_fields)
    if loc[0] == "elasticsearch":
        return list(ConnectionConfig.model_fields)
    if loc[0] == "passive" and len(loc) >= 3:
        return [
            *Icinga2PassiveConfig.model_fields,
            *NagiosPassiveConfig.model_fields,
            *PassiveGroupsConfig.model_fields,
        ]
    if loc and loc[0] in models:
        return list(models[str(loc[0])].model_fields)
    return []
