"""Field types of check definitions: ranges, states, lists and JSON objects read from files.

Shared by every kind's model; each type validates once so the planner and the evaluator can
trust what they get (a ``Range``, a ``State``, a bounded JSON object).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
)

from esbridge import limits
from esbridge.durations import from_scalar
from esbridge.ranges import Range
from esbridge.result import State

RANGE_PATTERN = r"^@?((~|[-+]?(\d+(\.\d*)?|\.\d+))?:)?([-+]?(\d+(\.\d*)?|\.\d+))?$"


def _parse_range(value: str | int | float) -> Range:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"invalid range {value!r}")
    return Range.parse(value)


_range = from_scalar(
    Range, _parse_range, "invalid range {value!r}: expected a number or a text like '10:20'"
)


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
# An index, field or repository name: never empty (an empty index in an _msearch header
# means every index; an empty field only fails at run time).
Name = Annotated[str, StringConstraints(min_length=1, max_length=limits.MAX_SHORT_TEXT_LENGTH)]
LongText = Annotated[str, StringConstraints(max_length=limits.MAX_TEXT_LENGTH)]
QueryText = Annotated[str, StringConstraints(max_length=limits.MAX_QUERY_LENGTH)]

StrList = Annotated[
    tuple[Name, ...],
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
        elif node is not None and not isinstance(node, str | int | float):
            # A YAML timestamp, a tag (!env X), !!binary or !!set: no JSON would carry it,
            # so every run would fail; esbridge expands no tags.
            raise ValueError(f"{_not_json(node)} is not JSON: quote it to send it as text")


def _not_json(node: Any) -> str:
    if isinstance(node, datetime):
        return f"the YAML timestamp {node.isoformat(sep=' ')}"
    tag = getattr(node, "tag", None)
    if tag is not None:
        return (
            f"the tagged value {getattr(tag, 'value', tag)} {getattr(node, 'value', '')}".rstrip()
        )
    return {bytes: "a !!binary value", set: "a !!set"}.get(type(node), f"a {type(node).__name__}")


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


def check_percentile(agg: str | None, value: float | None) -> float | None:
    """``percentile`` is required with ``agg: percentile`` and refused otherwise."""
    if agg == "percentile":
        if value is None:
            raise ValueError("percentile is required when agg is percentile (e.g. 99 or 99.9)")
        if not 0 < value < 100:
            raise ValueError(f"percentile must be between 0 and 100 (exclusive), got {value:g}")
    elif value is not None:
        raise ValueError("percentile is only used with agg: percentile")
    return value


def _percentile_of_agg(value: float | None, info: ValidationInfo) -> float | None:
    """Checked once ``agg`` is known (``agg`` is declared before ``percentile``)."""
    if "agg" not in info.data:
        return value
    return check_percentile(info.data["agg"], value)


#: ``percentile`` of a kind with ``agg``: required with ``agg: percentile``, refused otherwise
Percentile = Annotated[float | None, AfterValidator(_percentile_of_agg)]
