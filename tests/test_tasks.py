"""Background tasks: a stop must end even when a cancellation is lost on the way; a task's
CPU is metered step by step."""

from __future__ import annotations

import asyncio
import time

import pytest

from esbridge.tasks import TaskClock, cancel_all


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    """Python 3.11's ``asyncio.wait_for`` returns its result instead of raising when a
    cancellation arrives as its awaitable ends; the task then goes on into its next sleep,
    and awaiting it once hung the service's stop for good (seen in CI, on OpenSearch 3)."""
    swallowed = 0

    async def loop_that_loses_one_cancellation() -> None:
        nonlocal swallowed
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1  # what wait_for does in that race: carry on as if not cancelled
        await asyncio.sleep(3600)  # the loop's next interval

    loop = asyncio.get_running_loop()
    task = loop.create_task(loop_that_loses_one_cancellation())
    await asyncio.sleep(0)
    stopping = loop.create_task(cancel_all([task]))
    done, _ = await asyncio.wait([stopping], timeout=5)  # wait() cancels nothing itself
    task.cancel()  # whatever happened, nothing is left running
    await asyncio.wait([stopping])
    assert stopping in done, "cancel_all waited for good for a task that went on"
    assert swallowed == 1 and task.cancelled()


async def test_failures_and_finished_tasks_do_not_stop_the_others() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def sleeps() -> None:
        await asyncio.sleep(3600)

    loop = asyncio.get_running_loop()
    failed, sleeping = loop.create_task(fails()), loop.create_task(sleeps())
    await asyncio.sleep(0)
    assert failed.done()
    await cancel_all([failed, sleeping])
    assert sleeping.cancelled()


def _spin(seconds: float) -> None:
    """Busy for ``seconds`` of this thread's CPU."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def test_a_task_clock_counts_the_steps_of_its_task_and_nothing_else() -> None:
    """CPU spent between the metered task's awaits counts, its sleeps do not, and another
    task's CPU meanwhile does not either: what a coordination task costs, all in."""
    clock = TaskClock()

    async def metered() -> str:
        _spin(0.05)
        await asyncio.sleep(0.2)  # asleep: the other task runs now
        _spin(0.05)
        return "done"

    async def other() -> None:
        await asyncio.sleep(0.05)
        _spin(0.1)

    result, _ = await asyncio.gather(clock.run(metered()), other())
    assert result == "done"
    assert 0.1 <= clock.seconds < 0.15, clock.seconds


async def test_a_metered_task_is_cancelled_and_fails_as_the_task_itself() -> None:
    clock = TaskClock()
    cleaned = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    task = asyncio.get_running_loop().create_task(clock.run(forever()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()  # the cancellation reached the coroutine inside

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await clock.run(fails())
    assert clock.seconds > 0
