"""Check definitions: immutable pydantic models, one class per ``kind``.

Operators write these in YAML (see ``docs/checks.md``); the loader turns each item of a
file's ``checks:`` list into one of the classes below. Everything is validated here so
that the planner and the evaluator can trust what they get: ranges are parsed ``Range``
values, durations are ``timedelta``, ``no_data`` is a ``State``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from esbridge import limits
from esbridge.durations import Duration, format_duration
from esbridge.ranges import Range
from esbridge.result import State

__all__ = [
    "CHECK_CLASSES",
    "CLUSTER_KINDS",
    "COMMON_FIELDS",
    "DATA_KINDS",
    "KINDS",
    "ChangeCheck",
    "CheckBase",
    "CheckDefinition",
    "ClusterHealthCheck",
    "CountCheck",
    "DiskCheck",
    "FreshnessCheck",
    "JvmHeapCheck",
    "MasterCheck",
    "MetricCheck",
    "NodesCheck",
    "RatioCheck",
    "UnassignedShardsCheck",
    "check_adapter",
    "check_file_schema",
]

MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=7)
NAME_PATTERN = limits.NAME_PATTERN
RANGE_PATTERN = r"^@?((~|[-+]?(\d+(\.\d*)?|\.\d+))?:)?([-+]?(\d+(\.\d*)?|\.\d+))?$"


# --- field types ---------------------------------------------------------------------------


def _range(value: Any) -> Range:
    if isinstance(value, Range):
        return value
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"invalid range {value!r}: expected a number or a text like '10:20'")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"invalid range {value!r}")
    return Range.parse(value)


RangeField = Annotated[
    Range,
    PlainValidator(_range),
    PlainSerializer(str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string", "pattern": RANGE_PATTERN}],
            "description": "a Nagios range [@][start:][end]: 10, '10:', '~:10', '10:20', '@10:20'",
        }
    ),
]


def _state(value: Any) -> State:
    return State.parse(value)


StateField = Annotated[
    State,
    PlainValidator(_state),
    PlainSerializer(lambda s: s.name.lower(), when_used="json"),
    WithJsonSchema({"type": "string", "enum": ["ok", "warning", "critical", "unknown"]}),
]


def _string_list(value: Any) -> Any:
    """Accept ``"a"``, ``"a,b"`` or ``["a", "b"]``."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


ShortText = Annotated[str, StringConstraints(max_length=limits.MAX_SHORT_TEXT_LENGTH)]
LongText = Annotated[str, StringConstraints(max_length=limits.MAX_TEXT_LENGTH)]
QueryText = Annotated[str, StringConstraints(max_length=limits.MAX_QUERY_LENGTH)]

StrList = Annotated[
    tuple[ShortText, ...],
    BeforeValidator(_string_list),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
    ),
]


def _tag_list(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


TagList = Annotated[
    tuple[ShortText, ...],
    BeforeValidator(_tag_list),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


def _json_object(value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, Mapping):
        _check_json(value)
        return value
    raise ValueError(
        f"must be a JSON object (a mapping such as {{match: {{status: 500}}}}), "
        f"not {_type_name(value)}"
    )


def _check_json(value: Any) -> None:
    """Refuse what Elasticsearch could not parse or what only a hostile file contains.

    Iterative (a deep object must not exhaust the Python stack): numbers must fit a long or
    be finite, texts fit the query limit, nesting stays within the depth limit.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.MAX_NESTING_DEPTH:
            raise ValueError(f"nested deeper than {limits.MAX_NESTING_DEPTH} levels")
        if isinstance(node, Mapping):
            stack.extend((v, depth + 1) for v in node.values())
            for key in node:
                if isinstance(key, str) and len(key) > limits.MAX_SHORT_TEXT_LENGTH:
                    raise ValueError(
                        f"a key is longer than {limits.MAX_SHORT_TEXT_LENGTH} characters"
                    )
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int) and abs(node) > limits.MAX_INTEGER:
            raise ValueError(f"a number has {len(str(abs(node)))} digits: too large for a long")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"a number is {node!r}: only finite numbers are allowed")
        elif isinstance(node, str) and len(node) > limits.MAX_QUERY_LENGTH:
            raise ValueError(f"a text is longer than {limits.MAX_QUERY_LENGTH} characters")


def _type_name(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]

Agg = Literal["avg", "min", "max", "sum", "value_count", "cardinality", "percentile"]


# --- the common base -----------------------------------------------------------------------


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
    timestamp_field: ShortText = Field("@timestamp", description="the time field of the documents")
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

    @property
    def thresholds_text(self) -> str:
        """``warning 10, critical 50`` (only the thresholds that are set)."""
        parts = []
        if self.warning is not None:
            parts.append(f"warning {self.warning}")
        if self.critical is not None:
            parts.append(f"critical {self.critical}")
        return ", ".join(parts) if parts else "no thresholds"


class _DataCheck(CheckBase):
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


class _ClusterCheck(CheckBase):
    """Kinds that read cluster APIs: no index, no grouping, window ignored."""

    is_cluster_kind: ClassVar[bool] = True


def _check_percentile(agg: str | None, value: float | None) -> float | None:
    if agg == "percentile":
        if value is None:
            raise ValueError("percentile is required when agg is percentile (e.g. 99 or 99.9)")
        if not 0 < value < 100:
            raise ValueError(f"percentile must be between 0 and 100 (exclusive), got {value:g}")
    elif value is not None:
        raise ValueError("percentile is only used with agg: percentile")
    return value


# --- data kinds ------------------------------------------------------------------------------


class CountCheck(_DataCheck):
    """Number of documents matching the query in the window."""

    supports_group_by: ClassVar[bool] = True
    kind: Literal["count"] = "count"


class MetricCheck(_DataCheck):
    """An aggregation (avg, max, percentile, ...) of a numeric field over the window."""

    supports_group_by: ClassVar[bool] = True
    kind: Literal["metric"] = "metric"
    field: ShortText = Field(description="numeric field to aggregate")
    agg: Agg = Field(description="aggregation")
    percentile: float | None = Field(
        None, validate_default=True, description="with agg: percentile, e.g. 99.9"
    )

    @field_validator("percentile")
    @classmethod
    def _percentile(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "agg" not in info.data:
            return value
        return _check_percentile(info.data["agg"], value)


class RatioCheck(_DataCheck):
    """numerator / denominator of the documents, in percent (0..100)."""

    supports_group_by: ClassVar[bool] = True
    kind: Literal["ratio"] = "ratio"
    unit: str = "%"
    numerator: QueryText | JsonObject = Field(description="Lucene query or DSL object: the part")
    denominator: QueryText | JsonObject | None = Field(
        None, description="Lucene query or DSL object: the whole (default: all matched)"
    )

    @field_validator("numerator", "denominator")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value


class ChangeCheck(_DataCheck):
    """Percent change of this window vs the previous window of the same length."""

    kind: Literal["change"] = "change"
    unit: str = "%"
    field: ShortText | None = Field(None, description="numeric field (omit to compare counts)")
    agg: Agg | None = Field(None, validate_default=True, description="aggregation of field")
    percentile: float | None = Field(None, validate_default=True)

    @field_validator("agg")
    @classmethod
    def _field_and_agg(cls, value: str | None, info: ValidationInfo) -> str | None:
        field = info.data.get("field")
        if (field is None) != (value is None):
            raise ValueError("set both field and agg, or neither (to compare document counts)")
        return value

    @field_validator("percentile")
    @classmethod
    def _percentile(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "agg" not in info.data:
            return value
        return _check_percentile(info.data["agg"], value)


class FreshnessCheck(_DataCheck):
    """Age in seconds of the newest document (per group): "host stopped sending"."""

    supports_group_by: ClassVar[bool] = True
    default_no_data: ClassVar[State] = State.CRITICAL
    kind: Literal["freshness"] = "freshness"
    window: Duration = Field(timedelta(hours=24), description="lookback for the newest document")
    unit: str = "s"


# --- cluster kinds -----------------------------------------------------------------------------


class ClusterHealthCheck(_ClusterCheck):
    """green → OK, yellow → WARNING, red → CRITICAL."""

    requires_thresholds: ClassVar[bool] = False
    kind: Literal["cluster_health"] = "cluster_health"


class NodesCheck(_ClusterCheck):
    """Node count (and data node count) compared to what is expected."""

    requires_thresholds: ClassVar[bool] = False
    kind: Literal["nodes"] = "nodes"
    expected_nodes: int = Field(ge=1, le=100_000, description="nodes the cluster should have")
    expected_data_nodes: int | None = Field(
        None, ge=0, le=100_000, description="data nodes expected"
    )


class UnassignedShardsCheck(_ClusterCheck):
    """Number of unassigned shards."""

    kind: Literal["unassigned_shards"] = "unassigned_shards"


class JvmHeapCheck(_ClusterCheck):
    """Highest JVM heap use of any node, in percent."""

    kind: Literal["jvm_heap"] = "jvm_heap"
    warning: RangeField | None = Range.parse("85")
    critical: RangeField | None = Range.parse("95")
    unit: str = "%"


class DiskCheck(_ClusterCheck):
    """Highest disk use of any data node, in percent."""

    kind: Literal["disk"] = "disk"
    warning: RangeField | None = Range.parse("80")
    critical: RangeField | None = Range.parse("90")
    unit: str = "%"


class MasterCheck(_ClusterCheck):
    """All nodes agree on one elected master (split brain / no master → CRITICAL)."""

    requires_thresholds: ClassVar[bool] = False
    kind: Literal["master"] = "master"
    node_urls: StrList = Field(
        (),
        max_length=limits.MAX_LIST_ITEMS,
        description="node URLs to ask (default: the connection's)",
    )


CheckDefinition = Annotated[
    Union[  # noqa: UP007 - a discriminated union needs the Union form for older tools
        CountCheck,
        MetricCheck,
        RatioCheck,
        ChangeCheck,
        FreshnessCheck,
        ClusterHealthCheck,
        NodesCheck,
        UnassignedShardsCheck,
        JvmHeapCheck,
        DiskCheck,
        MasterCheck,
    ],
    Field(discriminator="kind"),
]

CHECK_CLASSES: dict[str, type[CheckBase]] = {
    cls.model_fields["kind"].default: cls
    for cls in (
        CountCheck,
        MetricCheck,
        RatioCheck,
        ChangeCheck,
        FreshnessCheck,
        ClusterHealthCheck,
        NodesCheck,
        UnassignedShardsCheck,
        JvmHeapCheck,
        DiskCheck,
        MasterCheck,
    )
}
KINDS: tuple[str, ...] = tuple(CHECK_CLASSES)
CLUSTER_KINDS: tuple[str, ...] = tuple(k for k, c in CHECK_CLASSES.items() if c.is_cluster_kind)
DATA_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in CLUSTER_KINDS)
#: fields every kind has (what a file's ``defaults:`` may set, minus name and kind)
COMMON_FIELDS: tuple[str, ...] = tuple(CheckBase.model_fields)

check_adapter: TypeAdapter[Any] = TypeAdapter(CheckDefinition)


def check_file_schema(kind: str | None = None) -> dict[str, Any]:
    """JSON Schema of a check file (``defaults`` + ``checks``), optionally one kind only."""
    if kind is not None:
        if kind not in CHECK_CLASSES:
            raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        item = CHECK_CLASSES[kind].model_json_schema()
        defs = item.pop("$defs", {})
    else:
        item = check_adapter.json_schema()
        defs = item.pop("$defs", {})
    base = CheckBase.model_json_schema()
    defaults_props = {k: v for k, v in base["properties"].items() if k not in {"name", "kind"}}
    defs.update(base.get("$defs", {}))
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "esbridge check file" + (f" (kind {kind})" if kind else ""),
        "type": "object",
        "additionalProperties": False,
        "patternProperties": {"^x-": {}},
        "properties": {
            "defaults": {
                "type": "object",
                "description": "fields merged into every check of this file",
                "additionalProperties": False,
                "properties": defaults_props,
            },
            "checks": {"type": "array", "items": item},
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema
