"""Check definitions: immutable pydantic models, one class per ``kind``.

Operators write these in YAML (see ``docs/checks.md``); the loader turns each item of a
file's ``checks:`` list into one of the kind classes. Each class lives in its kind's module
(``esbridge.kinds``); this module builds the discriminated union and the lookup tables from
the kind registry and re-exports the classes, so the rest of esbridge imports them from here.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from esbridge.kinds import REGISTRY
from esbridge.kinds.base import CheckBase
from esbridge.kinds.change import ChangeCheck
from esbridge.kinds.cluster_health import ClusterHealthCheck
from esbridge.kinds.count import CountCheck
from esbridge.kinds.disk import DiskCheck
from esbridge.kinds.freshness import FreshnessCheck
from esbridge.kinds.jvm_heap import JvmHeapCheck
from esbridge.kinds.master import MasterCheck
from esbridge.kinds.metric import MetricCheck
from esbridge.kinds.nodes import NodesCheck
from esbridge.kinds.ratio import RatioCheck
from esbridge.kinds.snapshot import SnapshotCheck
from esbridge.kinds.thread_pool import ThreadPoolCheck
from esbridge.kinds.unassigned_shards import UnassignedShardsCheck

__all__ = [
    "CHECK_CLASSES",
    "CLUSTER_KINDS",
    "COMMON_FIELDS",
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
    "SnapshotCheck",
    "ThreadPoolCheck",
    "UnassignedShardsCheck",
    "check_adapter",
    "check_file_schema",
]

CHECK_CLASSES: dict[str, type[CheckBase]] = {name: k.model for name, k in REGISTRY.items()}

# A discriminated union of every registered class (built at import: the registry is the list).
CheckDefinition = Annotated[
    Union[tuple(CHECK_CLASSES.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="kind"),
]

KINDS: tuple[str, ...] = tuple(CHECK_CLASSES)
CLUSTER_KINDS: tuple[str, ...] = tuple(k for k, c in CHECK_CLASSES.items() if c.is_cluster_kind)
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
