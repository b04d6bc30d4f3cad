"""Where each check's runs fall: the slot grid every replica computes the same way.

A check's slots are ``k x interval + first_offset(name, interval)`` (wall clock, anchored to
whole intervals since the epoch). The scheduler starts runs on them; with replicas, an
owner's mark says which slots ran (see ``ResultStore.announce_marked``), and a replica that
follows it dates each foreign run to its slot from the same formula, never from a message.
"""

from __future__ import annotations

import zlib

SLOT_SECONDS = 5.0


def first_offset(name: str, interval: float) -> float:
    """Deterministic offset in ``[0, interval)``, quantised to slots of about 5 s."""
    slots = max(1, int(interval // SLOT_SECONDS))
    return (zlib.crc32(name.encode()) % slots) * (interval / slots)


def last_slot(upto: float, offset: float, interval: float) -> float:
    """The latest slot at or before ``upto`` of a check with this offset and interval."""
    return upto - (upto - offset) % interval
