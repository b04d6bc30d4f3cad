"""Load small, hand-written documents into Elasticsearch (tests, benchmarks, demo).

A document may carry ``"ago"``: ``"3m"``, ``"90s"``, ``"1h"``, ``"2d"``, ``"250ms"`` or a number
of seconds; it becomes ``@timestamp`` = now - ago (ISO 8601 UTC with milliseconds) and the
``ago`` key is dropped. Documents that already have ``@timestamp`` keep it.

    from esbridge_dev.seeding import seed
    seed("http://127.0.0.1:9200", "t-1234", [{"host": "web-01", "status": 500, "ago": "2m"}])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from esbridge_dev import httpcalls

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_ago(ago: str | float | int | timedelta) -> timedelta:
    if isinstance(ago, timedelta):
        return ago
    if isinstance(ago, int | float):
        return timedelta(seconds=float(ago))
    m = _AGO.match(str(ago))
    if not m:
        raise ValueError(f"cannot read ago={ago!r}: use e.g. '90s', '5m', '1h', '2d' or seconds")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with milliseconds: 2024-05-01T12:00:00.123Z."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def prepare_docs(docs: Iterable[Mapping[str, Any]], now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(UTC)
    out = []
    for d in docs:
        doc = dict(d)
        if "ago" in doc:
            doc["@timestamp"] = iso(now - parse_ago(doc.pop("ago")))
        elif isinstance(doc.get("@timestamp"), datetime):
            doc["@timestamp"] = iso(doc["@timestamp"])
        out.append(doc)
    return out


def bulk_ndjson(index: str, docs: Iterable[Mapping[str, Any]]) -> str:
    action = json.dumps({"index": {"_index": index}})
    return "".join(f"{action}\n{json.dumps(d, default=str)}\n" for d in docs)


def check_bulk(resp: httpx.Response) -> None:
    if resp.status_code >= 300:
        raise RuntimeError(f"bulk failed: HTTP {resp.status_code}: {resp.text[:2000]}")
    body = resp.json()
    if body.get("errors"):
        errs = [it for item in body.get("items", []) for it in item.values() if it.get("error")]
        raise RuntimeError(
            f"bulk had {len(errs)} item errors, first: {errs[0]['error'] if errs else '?'}"
        )


def seed(
    es_url: str,
    index: str,
    docs: Iterable[Mapping[str, Any]],
    now: datetime | None = None,
    refresh: bool = True,
    client: httpx.Client | None = None,
) -> list[dict]:
    """Bulk-index docs into index, refresh; return the documents as sent."""
    prepared = prepare_docs(docs, now)
    if not prepared:
        if refresh:
            _post(es_url, f"/{index}/_refresh", None, client)
        return prepared
    body = bulk_ndjson(index, prepared)
    params = "?refresh=true&filter_path=errors,items.*.error" if refresh else "?filter_path=errors"
    resp = _post(es_url, f"/_bulk{params}", body, client)
    check_bulk(resp)
    return prepared


def _post(es_url: str, path: str, body: str | None, client: httpx.Client | None) -> httpx.Response:
    headers = {"Content-Type": "application/x-ndjson"}
    if client is not None:
        return client.post(es_url + path, content=body, headers=headers)
    with httpcalls.client(base_url=es_url, timeout=60) as c:
        return c.post(path, content=body, headers=headers)
