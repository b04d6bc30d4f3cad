"""Which replica owns which check: rendezvous (highest-random-weight) hashing.

Every replica computes the same answer from the same member list, with no coordination
beyond membership itself: owner(check) = the member with the highest hash(check, member).
A leave moves only the leaving member's checks (spread over the survivors); a join takes
about 1/(n+1) of the checks, evenly from every member (Thaler & Ravishankar 1998).

The hash is BLAKE2b (stable across processes and Python versions; the built-in ``hash`` of a
``str`` is salted per process and would make every replica disagree). Jump hashing is cheaper
but needs members numbered 0..n-1 and can only drop the highest one, which does not fit
replicas that die in any order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b


def weight(check: str, member: str) -> int:
    """The rendezvous weight of ``member`` for ``check``: 64 stable pseudo-random bits."""
    name = check.encode("utf-8", "surrogatepass")
    # Length-prefixed, so ("ab", "c") and ("a", "bc") never hash the same input.
    data = len(name).to_bytes(4, "big") + name + member.encode("utf-8", "surrogatepass")
    digest = blake2b(data, digest_size=8, person=b"esbridge-hrw").digest()
    return int.from_bytes(digest, "big")


def owner(check: str, members: Sequence[str]) -> str | None:
    """The member that owns ``check`` (None without members). Ties break on the id."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (weight(check, member), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best is not None else None


def assign(checks: Iterable[str], members: Sequence[str]) -> dict[str, str]:
    """check name → owner for every check (empty when there are no members)."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    return {name: owner(name, ordered) or "" for name in checks}  # type: ignore[misc]


def owned_by(checks: Iterable[str], members: Sequence[str], member: str) -> set[str]:
    """The checks ``member`` owns among ``members``."""
    return {name for name, who in assign(checks, members).items() if who == member}
