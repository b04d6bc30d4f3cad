"""Elasticsearch index mappings built from field types, so each index states only its fields."""

from __future__ import annotations

from typing import Any

# The field types esbridge's own indices use; "opaque" is stored but never indexed.
_FIELD_TYPES: dict[str, dict[str, Any]] = {
    "keyword": {"type": "keyword"},
    "integer": {"type": "integer"},
    "long": {"type": "long"},
    "double": {"type": "double"},
    "date": {"type": "date"},
    "epoch_millis": {"type": "date", "format": "epoch_millis"},
    "opaque": {"type": "object", "enabled": False},
}


def index_mapping(dynamic: bool | str, **fields: tuple[str, ...]) -> dict[str, Any]:
    """``index_mapping("strict", keyword=("check", "state"), ...)``: an index's mapping."""
    return {
        "dynamic": dynamic,
        "properties": {
            name: dict(_FIELD_TYPES[kind]) for kind, names in fields.items() for name in names
        },
    }
