"""Settings of the passive targets (``passive:``): Icinga 2 API and Nagios command file.

Host and service names are templates; a template that could never render (a typo in a field
name) is refused when the configuration loads, not when the first result is sent.
"""

from __future__ import annotations

import os
import string
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from esbridge.config_sections import ConfigError, Section, StrList, resolve_secret
from esbridge.durations import Duration
from esbridge.limits import shown_url

__all__ = [
    "Icinga2PassiveConfig",
    "NagiosPassiveConfig",
    "PassiveGroupsConfig",
    "PassiveTarget",
]


_TEMPLATE_FIELDS = {"check", "labels"}
_GROUP_TEMPLATE_FIELDS = {"check", "labels", "group", "group_label", "group_key"}


def _check_template(text: str, allowed: set[str], what: str) -> str:
    """Fail at load time on a template that could never render (typo in a field name)."""
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


class PassiveGroupsConfig(Section):
    """Each group of a grouped check as its own service (e.g. one per web host)."""

    host: str = "{group[host]}"
    service: str = "{check}"

    @field_validator("host", "service")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value, _GROUP_TEMPLATE_FIELDS, "template")


class _PassiveTarget(Section):
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
            raise ValueError(f"{shown_url(value)!r} is not an http:// or https:// URL")
        if "@" in urlsplit(value).netloc:
            # the URL is in errors and log lines: the password belongs in password_file
            raise ValueError(
                f"{shown_url(value)!r} has credentials in it: give them as username and "
                "password_file (or password_env)"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_password(self) -> Icinga2PassiveConfig:
        sources = [self.password, self.password_file, self.password_env]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("set exactly one of password, password_file, password_env")
        return self

    def resolved_password(self) -> str:
        """The API user's password from the file, the environment or the setting."""
        secret = resolve_secret(self.password, self.password_file, "password")
        if secret is not None:
            return secret
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
