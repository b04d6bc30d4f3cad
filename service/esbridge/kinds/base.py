"""The common base of every check definition: the fields and rules all kinds share.

Each kind's module subclasses :class:`DataCheck` (queries documents: an index is required)
or :class:`ClusterCheck` (reads cluster APIs) and adds its own fields.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from esbridge import limits
from esbridge.durations import Duration, format_duration
from esbridge.kinds.fields import (
    JsonObject,
    LongText,
    Name,
    QueryText,
    RangeField,
    ShortText,
    StateField,
    StrList,
    TagList,
)
from esbridge.result import State

MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=7)
NAME_PATTERN = limits.NAME_PATTERN


def _require_kind(schema: dict[str, Any]) -> None:
    """``kind`` has a default in code (``CountCheck(...)``) but a file must always say it."""
    if "kind" in schema.get("properties", {}):
        required = schema.setdefault("required", [])
        if "kind" not in required:
            required.insert(0, "kind")


class CheckBase(BaseModel):
    """Fields every kind has. Not used directly: see the kind classes below."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_require_kind)

    #: the kind needs no index (cluster APIs)
    is_cluster_kind: ClassVar[bool] = False
    #: ``group_by`` is allowed
    supports_group_by: ClassVar[bool] = False
    #: at least one of warning/critical must be set
    requires_thresholds: ClassVar[bool] = True
    #: state when the query matches nothing
    default_no_data: ClassVar[State] = State.UNKNOWN
    # The lowest value the kind can measure (counts, ratios and ages: 0), for the rule of
    # which side alerts (kinds.judge.low_values_alert); -inf when values can be negative.
    value_floor: ClassVar[float] = float("-inf")

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=limits.NAME_MAX_LENGTH,
        description="unique name: lowercase letters, digits, '_', '.', '-'",
    )
    description: LongText = Field("", description="free text shown in the status page and API")
    kind: str
    index: StrList = Field(
        (),
        max_length=limits.MAX_LIST_ITEMS,
        description="index names or patterns (e.g. logs-web-*)",
    )
    query: QueryText | None = Field(None, description="Lucene query string filtering the documents")
    query_dsl: JsonObject | None = Field(
        None, description="Elasticsearch query DSL object (instead of query)"
    )
    timestamp_field: Name = Field("@timestamp", description="the time field of the documents")
    window: Duration = Field(timedelta(minutes=5), description="time range looked at")
    delay: Duration = Field(
        timedelta(0), description="shift the window back (for late-arriving documents)"
    )
    interval: Duration | None = Field(None, description="how often to run (default 60s)")
    timeout: Duration | None = Field(None, description="Elasticsearch timeout (<= interval)")
    warning: RangeField | None = None
    critical: RangeField | None = None
    unit: ShortText = Field("", description="unit of the value: '', s, ms, %, B, c, ...")
    no_data: StateField | None = Field(None, description="state when nothing matches")
    group_by: StrList = Field(
        (), max_length=limits.MAX_LIST_ITEMS, description="keyword fields: one result per group"
    )
    max_groups: int = Field(100, ge=1, le=10000, description="groups beyond are counted only")
    labels: dict[ShortText, ShortText] = Field(
        default_factory=dict, max_length=limits.MAX_LIST_ITEMS, description="extra metric labels"
    )
    tags: TagList = Field(
        (), max_length=limits.MAX_LIST_ITEMS, description="free tags for filtering"
    )
    runbook: LongText | None = Field(None, description="URL or text telling what to do")
    cluster: ShortText = Field("default", description="the elasticsearch connection to use")

    _source_file: str | None = PrivateAttr(default=None)
    _source_line: int | None = PrivateAttr(default=None)

    # -- validators (field order matters: info.data holds the fields before this one) --

    @field_validator("window")
    @classmethod
    def _window_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"window must be longer than 0s, got {format_duration(value)}")
        if value > limits.MAX_WINDOW:
            raise ValueError(
                f"window {format_duration(value)} is too long: at most "
                f"{format_duration(limits.MAX_WINDOW)}"
            )
        return value

    @field_validator("delay")
    @classmethod
    def _delay_bounds(cls, value: timedelta) -> timedelta:
        if value > limits.MAX_DELAY:
            raise ValueError(
                f"delay {format_duration(value)} is too long: at most "
                f"{format_duration(limits.MAX_DELAY)}"
            )
        return value

    @field_validator("query_dsl")
    @classmethod
    def _one_query(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("query") is not None:
            raise ValueError("set either query or query_dsl, not both")
        return value

    @field_validator("interval")
    @classmethod
    def _interval_bounds(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not (MIN_INTERVAL <= value <= MAX_INTERVAL):
            raise ValueError(f"absurd interval {format_duration(value)}: must be between 1s and 7d")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_fits(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        if value is None:
            return value
        if value <= timedelta(0):
            raise ValueError("timeout must be longer than 0s")
        interval = info.data.get("interval")
        if interval is not None and value > interval:
            raise ValueError(
                f"timeout {format_duration(value)} is longer than interval "
                f"{format_duration(interval)}"
            )
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by_allowed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and not cls.supports_group_by:
            kind = cls.model_fields["kind"].default
            raise ValueError(
                f"group_by is not supported for kind '{kind}' "
                "(only count, metric, ratio and freshness)"
            )
        if len(set(value)) != len(value):
            raise ValueError("group_by names a field twice")
        seen: dict[str, str] = {}
        for name in value:
            label = limits.label_name(name)
            if label in seen:
                raise ValueError(
                    f"fields '{seen[label]}' and '{name}' would both be the metric label "
                    f"'{label}' (Prometheus rejects a duplicate label): group by only one of them"
                )
            seen[label] = name
        return value

    @model_validator(mode="after")
    def _thresholds_present(self) -> CheckBase:
        if self.requires_thresholds and self.warning is None and self.critical is None:
            raise ValueError(
                f"set warning and/or critical (kind '{self.kind}' has nothing to alert on "
                "without a threshold)"
            )
        return self

    def warnings(self) -> list[tuple[str, str]]:
        """(field, message) for settings that are valid but cannot do what was meant.

        ``~:`` never alerts (everything is inside it) and ``@~:`` always alerts: reported
        by ``esbridge validate`` and logged at load, not refused.
        """
        found = []
        for name in ("warning", "critical"):
            value = getattr(self, name)
            if value is None or value.start != -math.inf or value.end != math.inf:
                continue
            if value.inside:
                found.append((name, f"range '{value}' always alerts: every value is inside it"))
            else:
                found.append((name, f"range '{value}' can never alert: no value is outside it"))
        return found

    # -- helpers used by the planner, evaluator and outputs --

    @property
    def source_file(self) -> str | None:
        """The file this check was loaded from (None when built in code)."""
        return self._source_file

    @property
    def source_line(self) -> int | None:
        """The 1-based line of the check in ``source_file``."""
        return self._source_line

    def with_source(self, file: str | None, line: int | None) -> CheckBase:
        """A copy that knows where it was defined (used by the loader)."""
        copy = self.model_copy()
        copy._source_file = file
        copy._source_line = line
        return copy

    @property
    def effective_no_data(self) -> State:
        """``no_data`` or this kind's default (freshness: CRITICAL, others: UNKNOWN)."""
        return self.no_data if self.no_data is not None else self.default_no_data

    def perf_label(self) -> str:
        """The perfdata label of the measured value: the kind unless the kind says otherwise."""
        return self.kind

    @property
    def thresholds_text(self) -> str:
        """``warning 10, critical 50`` (only the thresholds that are set)."""
        parts = []
        if self.warning is not None:
            parts.append(f"warning {self.warning}")
        if self.critical is not None:
            parts.append(f"critical {self.critical}")
        return ", ".join(parts) if parts else "no thresholds"


class DataCheck(CheckBase):
    """Kinds that query documents: an index is required."""

    index: StrList = Field(
        max_length=limits.MAX_LIST_ITEMS, description="index names or patterns (e.g. logs-web-*)"
    )

    @field_validator("index")
    @classmethod
    def _index_present(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("index must name at least one index or pattern")
        return value


class ClusterCheck(CheckBase):
    """Kinds that read cluster APIs: no index, no grouping, window ignored."""

    is_cluster_kind: ClassVar[bool] = True
