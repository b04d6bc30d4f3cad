"""One result ready for one passive service: the submission, its rendering, the queue.

A target's queue holds at most one submission per (host, service), so memory is bounded by
the number of services however long a target is down.
"""

from __future__ import annotations

import asyncio
import select
import time
from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field

from esbridge.nagios import format_perfdata, render
from esbridge.result import GroupResult, Result, State

NAGIOS_MAX_COMMAND = 8192
"""Nagios 4 ``MAX_EXTERNAL_COMMAND_LENGTH``: one command line, newline included."""

PIPE_BUF: int = getattr(select, "PIPE_BUF", 512)
"""Writes to a pipe up to this size are atomic (4096 on Linux, POSIX minimum 512)."""

MAX_COMMAND_LINE = min(NAGIOS_MAX_COMMAND, PIPE_BUF)
"""The longest command line esbridge writes: a non-blocking write of a line this long puts
all of it in the pipe or none of it, so a full pipe can never leave half a command behind
for the next one to be glued onto."""


@dataclass
class Submission:
    """One check result ready to deliver to one service of one target."""

    host: str
    service: str
    check: str
    state: State
    output: str  # status line + long output, no perfdata
    perfdata: list[str]
    nagios_text: str  # the exact plugin text (render), for the Nagios command line
    execution_start: float
    execution_end: float
    ttl: float
    attempts: int = 0
    result: Result | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.host, self.service)


class DeliveryError(Exception):
    """A submission was not accepted; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def split_perfdata(result: Result) -> tuple[str, list[str]]:
    """(plugin output without perfdata, perfdata items) for APIs that take them apart.

    The text is :func:`esbridge.nagios.render` of the result with its perfdata removed, so it
    is sanitised (no ``|``) and bounded exactly like the plugin's output.
    """
    perfdata = format_perfdata([*result.perfdata, *(p for g in result.groups for p in g.perfdata)])
    bare = result.with_(
        perfdata=(),
        groups=tuple(GroupResult(g.key, g.state, g.value, g.summary, ()) for g in result.groups),
    )
    return render(bare), perfdata


def nagios_command(sub: Submission, now: float | None = None) -> str:
    """``[ts] PROCESS_SERVICE_CHECK_RESULT;host;service;code;output`` + ``\\n``, at most
    :data:`MAX_COMMAND_LINE` bytes (PIPE_BUF), so every write of it to the pipe is atomic.

    ``output`` is the plugin text (perfdata after ``|`` exactly as a plugin prints it) with
    backslashes doubled and line breaks written as ``\\n``: Nagios 4 unescapes both. A text
    too long is rendered again with a smaller budget (the plugin's own truncation rules).
    Raises ValueError when even the names alone do not fit.
    """
    ts = int(now if now is not None else time.time())
    head = f"[{ts}] PROCESS_SERVICE_CHECK_RESULT;{sub.host};{sub.service};{int(sub.state)};"
    room = MAX_COMMAND_LINE - len(head.encode()) - 1
    if room < 0:
        raise ValueError(f"host and service names longer than {MAX_COMMAND_LINE} bytes")
    text = sub.nagios_text
    while True:
        escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
        size = len(escaped.encode())
        if size <= room:
            return head + escaped + "\n"
        # the escapes take (size - len(text)) bytes: leave them that much room next time
        text = _rerender_bounded(sub, len(text.encode()) - (size - room))


def _rerender_bounded(sub: Submission, budget: int) -> str:
    """The plugin text within ``budget`` bytes: rendered again (the plugin's truncation
    rules, overall perfdata kept), or cut on a character boundary when too small for that."""
    result = sub.result
    if result is None or budget < 64:
        return sub.nagios_text.encode()[: max(budget, 0)].decode(errors="ignore")
    return render(result, max_bytes=budget)


def names(text: str) -> str:
    """A host/service name safe for both cores: no ``;``, ``!`` stays, no line breaks."""
    return text.replace(";", "_").replace("\n", " ").replace("\r", " ").strip()


class LatestQueue:
    """FIFO of submissions holding at most one per (host, service) and ``maxsize`` in all."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], Submission] = OrderedDict()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def put(self, sub: Submission, front: bool = False) -> int:
        """Queue ``sub``; returns how many submissions were dropped by doing so.

        ``front`` is for a retry: it goes first, unless a newer result for the same service
        is already waiting (then the retry itself is the one dropped).
        """
        dropped = 0
        if sub.key in self._items:
            if front:  # a retry never replaces a newer result
                return 1
            self._items[sub.key] = sub  # newest wins, keeps its place in line
            return 1
        while len(self._items) >= self.maxsize:
            self._items.popitem(last=False)
            dropped += 1
        self._items[sub.key] = sub
        if front:
            self._items.move_to_end(sub.key, last=False)
        self._ready.set()
        return dropped

    def wake(self) -> None:
        """Let waiting consumers look again (a service they had to skip became free)."""
        if self._items:
            self._ready.set()

    async def get_many(self, limit: int, skip: Container[tuple[str, str]] = ()) -> list[Submission]:
        """Up to ``limit`` submissions, oldest first, leaving those whose key is in ``skip``
        (in flight elsewhere) queued in their place; waits until there is one to take."""
        while True:
            out: list[Submission] = []
            for key in list(self._items):
                if key in skip:
                    continue
                out.append(self._items.pop(key))
                if len(out) >= limit:
                    break
            if out:
                return out
            self._ready.clear()
            await self._ready.wait()
