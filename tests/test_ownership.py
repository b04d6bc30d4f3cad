"""Rendezvous ownership, pure (no Elasticsearch): balance, minimal movement, stability."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from esbridge.ownership import assign, owned_by, owner, weight

CHECKS = [f"check-{i:06d}" for i in range(100_000)]
MEMBERS = [f"esbridge-{i}.example:9108" for i in range(10)]


def test_balance_on_ten_members() -> None:
    counts = Counter(assign(CHECKS, MEMBERS).values())
    assert set(counts) == set(MEMBERS)
    mean = len(CHECKS) / len(MEMBERS)
    assert max(counts.values()) / mean <= 1.1, counts


def test_a_join_moves_one_in_eleven_and_only_to_the_newcomer() -> None:
    before = assign(CHECKS, MEMBERS)
    newcomer = "esbridge-10.example:9108"
    after = assign(CHECKS, [*MEMBERS, newcomer])
    moved = [c for c in CHECKS if before[c] != after[c]]
    assert abs(len(moved) / len(CHECKS) - 1 / 11) <= 0.02
    assert {after[c] for c in moved} == {newcomer}


def test_a_leave_moves_only_the_leavers_checks() -> None:
    checks = CHECKS[:20_000]
    before = assign(checks, MEMBERS)
    gone = MEMBERS[3]
    after = assign(checks, [m for m in MEMBERS if m != gone])
    moved = {c for c in checks if before[c] != after[c]}
    assert moved == {c for c in checks if before[c] == gone}
    assert gone not in after.values()
    # spread over the survivors, not dumped on one of them
    assert len(Counter(after[c] for c in moved)) == len(MEMBERS) - 1


def test_order_of_members_does_not_matter() -> None:
    checks = CHECKS[:2000]
    assert assign(checks, MEMBERS) == assign(checks, list(reversed(MEMBERS)))
    assert owned_by(checks, MEMBERS, MEMBERS[0]) == {
        c for c in checks if owner(c, MEMBERS) == MEMBERS[0]
    }


def test_no_members_no_owner() -> None:
    assert owner("a", []) is None
    assert assign(["a"], []) == {}


def test_weights_are_the_same_in_every_process() -> None:
    """Python's str hash is salted per process; the weights must not be."""
    code = "from esbridge.ownership import weight; print(weight('web-5xx', 'pod-0'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert int(other.stdout) == weight("web-5xx", "pod-0")
    assert weight("ab", "c") != weight("a", "bc")
