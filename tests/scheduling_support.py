"""Check names whose first runs come when a test needs them, whatever the time of day.

The scheduler puts each check on a slot grid anchored to whole intervals since the epoch, so
an hourly check's regular slot is a fixed minute of the hour. A check with no current result
gets an early first run only when that slot is more than ``EAGER_SPREAD`` away; a test that
waits for the early run must pick a name whose regular slot is not about to come (it failed
once in CI when run half a minute before its slot).
"""

from __future__ import annotations

import time

from esbridge.scheduler import EAGER_SPREAD
from esbridge.slots import first_offset


def name_with_early_slot(prefix: str, interval: float, margin: float) -> str:
    """A check name whose early first run comes 1 s after start (offset 0 within the
    EAGER_SPREAD) and whose regular slot is more than ``margin`` seconds away from now."""
    now = time.time()
    for i in range(10_000):
        name = f"{prefix}-{i}"
        first = now - now % interval + first_offset(name, interval)
        if first <= now:
            first += interval
        if first_offset(name, EAGER_SPREAD) == 0 and first - now > margin:
            return name
    raise AssertionError("no suitable name")
