"""Is each data check's ``timestamp_field`` a date in the indices it searches?

A ``range`` on a field that is not mapped matches nothing, and on a ``keyword`` it compares
text: either way the window silently holds fewer documents (a misspelt ``@timestmap`` read
"0 matching documents", OK, for ever; an index of the pattern whose documents carry their
time under another name was left out of the count). Elasticsearch says nothing about it, so
the runner asks ``_field_caps`` before planning, once per index pattern and field per
:data:`TTL`, and a check whose field is not a date is UNKNOWN with what to fix:

- mapped with another type in some index (``keyword``, ``long``...): always a problem;
- not mapped in some (or all) indices: a problem when those indices hold documents (asked
  with ``_count``), never for a new daily index that is still empty.

The answer costs one or two small requests per pattern and minute, whatever the number of
checks. When ``_field_caps`` itself fails (Elasticsearch down, a privilege missing) nothing
is concluded: the check's own search reports the fault as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from esbridge.errors import ESError
from esbridge.esclient import Connection

TTL = 60.0
"""Seconds a verdict is kept: a new index (daily rollover) is looked at within a minute."""

DATE_TYPES = frozenset({"date", "date_nanos"})

Key = tuple[tuple[str, ...], str]  # (index patterns, timestamp field)


class TimeFields:
    """Verdicts on (index patterns, timestamp field) for one connection, kept :data:`TTL`."""

    def __init__(self, connection: Connection, clock: Callable[[], float] = time.monotonic) -> None:
        self.connection = connection
        self.clock = clock
        self._known: dict[Key, tuple[float, str | None]] = {}  # key -> (until, problem)

    async def problems(self, keys: Iterable[Key], timeout: float) -> dict[Key, str]:
        """What is wrong with the time field of each of ``keys`` (only those with a problem)."""
        now = self.clock()
        wanted = {k for k in keys if self._known.get(k, (0.0, None))[0] <= now}
        if wanted:
            found = await asyncio.gather(*(self._ask(k, timeout) for k in wanted))
            for key, problem in zip(wanted, found, strict=True):
                if problem is not False:  # False: nothing concluded, ask again next time
                    self._known[key] = (now + TTL, problem)
        out: dict[Key, str] = {}
        for key in keys:
            problem = self._known.get(key, (0.0, None))[1]
            if problem is not None:
                out[key] = problem
        return out

    async def _ask(self, key: Key, timeout: float) -> str | bool | None:
        indices, field = key
        target = quote(",".join(indices), safe=",*")
        path = (
            f"/{target}/_field_caps?fields={quote(field, safe='')}&include_unmapped=true"
            "&ignore_unavailable=true&allow_no_indices=true&expand_wildcards=open"
        )
        try:
            answer = await self.connection.raw("GET", path, None, timeout)
            verdict = field_problem(answer, field)
            if verdict is None or isinstance(verdict, str):
                return verdict
            documents = await self._documents(verdict, timeout)
        except ESError:
            return False
        if documents == 0:
            return None
        where = _some(verdict)
        return (
            f"timestamp_field '{field}' is not mapped in {where} ({documents} documents "
            f"there are never in the window): set timestamp_field to their time field, or "
            f"narrow index"
        )

    async def _documents(self, indices: list[str], timeout: float) -> int:
        target = quote(",".join(indices[:50]), safe=",")
        answer = await self.connection.raw(
            "GET", f"/{target}/_count?ignore_unavailable=true&allow_no_indices=true", None, timeout
        )
        return int(answer.get("count") or 0)


def field_problem(answer: dict[str, Any], field: str) -> str | list[str] | None:
    """A ``_field_caps`` answer judged: a problem (text), the indices where the field is not
    mapped (to count their documents), or None (a date everywhere, or no index at all)."""
    indices = [str(i) for i in answer.get("indices") or []]
    if not indices:
        return None  # nothing matches: the search says so (or counts 0), as before
    types: dict[str, Any] = (answer.get("fields") or {}).get(field) or {}
    if not types:
        return indices  # not mapped anywhere
    wrong = {t: caps for t, caps in types.items() if t not in DATE_TYPES and t != "unmapped"}
    if wrong:
        kind, caps = sorted(wrong.items())[0]
        where = _some(caps.get("indices") or indices)
        return (
            f"timestamp_field '{field}' is {kind} in {where}, not a date: the window compares "
            f"it as {kind}, so it holds the wrong documents (map it as date, or name the date "
            f"field in timestamp_field)"
        )
    unmapped = types.get("unmapped")
    if unmapped:
        return [str(i) for i in unmapped.get("indices") or indices]
    return None


def _some(indices: list[str]) -> str:
    shown = ", ".join(indices[:3])
    return shown + (f" and {len(indices) - 3} more" if len(indices) > 3 else "")
