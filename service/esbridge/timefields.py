"""Is each data check's ``timestamp_field`` a date in the indices it searches?

A ``range`` on a field that is not mapped matches nothing, and on a ``keyword`` it compares
text: either way the window silently holds fewer documents (a misspelt ``@timestmap`` read
"0 matching documents", OK, for ever; an index of the pattern whose documents carry their
time under another name was left out of the count). Elasticsearch says nothing about it, so
the runner asks ``_field_caps`` beside the searches, once per index pattern and field per
:data:`TTL`:

- a date in no index it searches (misspelt; ``keyword``, ``long``... everywhere; not mapped
  where documents are): the check is UNKNOWN with what to fix;
- a date in some indices only (a broad pattern that also matches a lookup index, or the
  indices of a renamed field not yet expired): the check is judged as usual, and its long
  output says which indices it cannot count (a not-mapped index only when it holds
  documents, asked with ``_count``: never a new daily index that is still empty).

The answer costs one or two small requests per pattern and minute, whatever the number of
checks. When ``_field_caps`` itself fails nothing is concluded (the check's own search
reports the fault as before) and it is asked again a minute later: never a second request
held by a black-holed or refusing cluster at every run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from esbridge.errors import ESError
from esbridge.esclient import Connection

TTL = 60.0
"""Seconds a verdict is kept: a new index (daily rollover) is looked at within a minute."""

DATE_TYPES = frozenset({"date", "date_nanos"})

Key = tuple[tuple[str, ...], str]  # (index patterns, timestamp field)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What is wrong with a check's time field: ``fatal`` (a date nowhere: the check is
    UNKNOWN with ``text``) or not (a date in some indices: ``text`` goes in its long output)."""

    fatal: bool
    text: str


class TimeFields:
    """Verdicts on (index patterns, timestamp field) for one connection, kept :data:`TTL`."""

    def __init__(self, connection: Connection, clock: Callable[[], float] = time.monotonic) -> None:
        self.connection = connection
        self.clock = clock
        self._known: dict[Key, tuple[float, Verdict | None]] = {}  # key -> (until, verdict)

    async def problems(self, keys: Iterable[Key], timeout: float) -> dict[Key, Verdict]:
        """What is wrong with the time field of each of ``keys`` (only those with a problem)."""
        keys = set(keys)
        now = self.clock()
        wanted = [k for k in keys if self._known.get(k, (0.0, None))[0] <= now]
        if wanted:
            found = await asyncio.gather(*(self._ask(k, timeout) for k in wanted))
            for key, verdict in zip(wanted, found, strict=True):
                self._known[key] = (now + TTL, verdict)
        out: dict[Key, Verdict] = {}
        for key in keys:
            verdict = self._known.get(key, (0.0, None))[1]
            if verdict is not None:
                out[key] = verdict
        return out

    async def _ask(self, key: Key, timeout: float) -> Verdict | None:
        indices, field = key
        target = quote(",".join(indices), safe=",*")
        path = (
            f"/{target}/_field_caps?fields={quote(field, safe='')}&include_unmapped=true"
            "&ignore_unavailable=true&allow_no_indices=true&expand_wildcards=open"
        )
        try:
            answer = await self.connection.raw("GET", path, None, timeout)
            found = judge(answer, field)
            if found is None or isinstance(found, Verdict):
                return found
            unmapped, anywhere = found
            documents = await self._documents(unmapped, timeout)
        except ESError:
            return None  # nothing concluded: the check's own search says what is wrong
        if documents == 0:
            return None
        text = (
            f"timestamp_field '{field}' is not mapped in {_some(unmapped)} ({documents} "
            "documents there are never in the window)"
        )
        if anywhere:
            return Verdict(False, text + ": only the indices where it is a date are counted")
        return Verdict(True, text + ": set timestamp_field to their time field, or narrow index")

    async def _documents(self, indices: list[str], timeout: float) -> int:
        target = quote(",".join(indices[:50]), safe=",")
        answer = await self.connection.raw(
            "GET", f"/{target}/_count?ignore_unavailable=true&allow_no_indices=true", None, timeout
        )
        return int(answer.get("count") or 0)


def judge(answer: dict[str, Any], field: str) -> Verdict | tuple[list[str], bool] | None:
    """A ``_field_caps`` answer judged: a verdict, or (the indices where the field is not
    mapped, whether it is a date anywhere) to count their documents first, or None (a date
    everywhere, or no index at all)."""
    indices = [str(i) for i in answer.get("indices") or []]
    if not indices:
        return None  # nothing matches: the search says so (or counts 0), as before
    types: dict[str, Any] = (answer.get("fields") or {}).get(field) or {}
    if not types:
        return indices, False  # not mapped anywhere
    dated = any(t in DATE_TYPES for t in types)
    wrong = {t: caps for t, caps in types.items() if t not in DATE_TYPES and t != "unmapped"}
    if wrong:
        kind, caps = sorted(wrong.items())[0]
        where = _some(caps.get("indices") or indices)
        text = (
            f"timestamp_field '{field}' is {kind} in {where}, not a date: the window compares "
            f"it as {kind}, so it holds the wrong documents (map it as date, or name the date "
            f"field in timestamp_field)"
        )
        return Verdict(not dated, text)
    unmapped = types.get("unmapped")
    if unmapped:
        return [str(i) for i in unmapped.get("indices") or indices], dated
    return None


def _some(indices: list[str]) -> str:
    shown = ", ".join(indices[:3])
    return shown + (f" and {len(indices) - 3} more" if len(indices) > 3 else "")
