"""Background tasks: ending them (cancel all first, then wait for each), and what they cost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

_T = TypeVar("_T")

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


class TaskClock:
    """CPU time of the event loop's thread spent running the steps of the tasks it meters.

    What a background task costs, all in: a counter around its own code leaves out what runs
    between its awaits on its behalf (building a request, the client's transport, decoding
    the answer), and the whole process's CPU mixes every task. A task's coroutine only runs
    when the loop steps it, so timing each step (``time.thread_time``, this thread only)
    counts everything it does and nothing else; the I/O callbacks that read its answers off
    the socket run outside its steps and are left out.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    async def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro`` with each of its steps timed."""
        return await _Stepped(coro, self)


class _Stepped(Generic[_T]):
    """Drives a coroutine as the task would, step by step, timing each step."""

    __slots__ = ("_clock", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, _T], clock: TaskClock) -> None:
        self._coro, self._clock = coro, clock

    def __await__(self) -> Generator[Any, Any, _T]:
        coro, clock = self._coro, self._clock
        value: Any = None
        error: BaseException | None = None
        while True:
            started = time.thread_time()
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                clock.seconds += time.thread_time() - started
            try:
                value, error = (yield yielded), None
            except BaseException as exc:  # a cancellation the task throws in, passed on
                value, error = None, exc
