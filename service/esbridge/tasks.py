"""Ending background tasks: cancel them all first, then wait for each to finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

# How often a task that is still running after its cancellation is cancelled again, and for
# how long: a shutdown must end even when a cancellation was lost on the way.
RECANCEL_EVERY = 0.1
RECANCEL_FOR = 10.0


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait for each; a task's own failure never stops the shutdown.

    A cancellation can be lost: Python 3.11's ``asyncio.wait_for`` returns its awaitable's
    result instead of raising ``CancelledError`` when both happen in the same turn of the
    loop (a shared product detection finishing as SIGTERM arrives), and the task goes on,
    into its next ``sleep``; awaiting it then hung the service's stop for good. So a task
    still running is cancelled again, for a bounded time, then left behind with a warning.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    give_up = loop.time() + RECANCEL_FOR
    while pending and loop.time() < give_up:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
        for task in pending:  # its cancellation was swallowed on the way: ask again
            task.cancel()
    for task in pending:
        log.warning("a background task did not stop when cancelled: %s", task.get_coro())
    for task in tasks:
        if task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()  # retrieved: a failure is not reported again at exit
