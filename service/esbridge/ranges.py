"""Nagios threshold ranges, exactly as the Monitoring Plugins Development Guidelines define them.

``[@][start:][end]``: ``10`` alerts outside 0..10, ``10:`` below 10, ``~:10`` above 10,
``10:20`` outside 10..20, ``@10:20`` inside 10..20. Endpoints are inclusive (not alerting);
with ``@`` the endpoints are inside, so they alert.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal

from esbridge.limits import MAX_ABS_NUMBER

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^(?P<inside>@)?(?:(?P<start>~|{_NUMBER})?:)?(?P<end>{_NUMBER})?$")


@dataclass(frozen=True, slots=True)
class Range:
    """A parsed range; ``alerts(value)`` says whether ``value`` crosses it."""

    start: float = 0.0
    end: float = math.inf
    inside: bool = False
    text: str = ""

    @classmethod
    def parse(cls, text: str | int | float) -> Range:
        """Parse a range; raise ``ValueError`` naming what is wrong."""
        if isinstance(text, bool):
            raise ValueError(f"invalid range {text!r}")
        if isinstance(text, int | float) and not abs(text) <= MAX_ABS_NUMBER:
            raise ValueError(
                f"invalid range: {_digits(text)} is too large (at most ±{MAX_ABS_NUMBER:.0e})"
            )
        raw = str(text).strip() if not isinstance(text, int | float) else _plain(float(text))
        if len(raw) > 1000:
            raise ValueError(f"invalid range: {len(raw)} characters is too long for a range")
        if raw == "":
            raise ValueError("invalid range '': empty")
        match = _RANGE.match(raw)
        if not match or raw in {"@", ":", "@:"}:
            raise ValueError(
                f"invalid range {raw!r}: expected [@][start:][end] such as 10, 10:, ~:10, "
                "10:20 or @10:20"
            )
        start_text, end_text = match.group("start"), match.group("end")
        has_colon = ":" in raw
        if start_text == "~":
            start = -math.inf
        elif start_text is None:
            start = 0.0
        else:
            start = float(start_text)
        if end_text is None:
            if not has_colon:
                raise ValueError(f"invalid range {raw!r}: missing end")
            end = math.inf
        else:
            end = float(end_text)
        written = [float(t) for t in (start_text, end_text) if t not in (None, "~")]
        if any(not abs(bound) <= MAX_ABS_NUMBER for bound in written):
            raise ValueError(
                f"invalid range {raw!r}: numbers must lie within ±{MAX_ABS_NUMBER:.0e}"
            )
        if start > end:
            raise ValueError(
                f"invalid range {raw!r}: start {_plain(start)} is greater than end {_plain(end)}"
            )
        return cls(start=start, end=end, inside=bool(match.group("inside")), text=raw)

    def alerts(self, value: float) -> bool:
        """True when ``value`` lies in the alerting part of the range."""
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def describe(self, value: float | None = None) -> str:
        """A phrase for summaries, naming the side crossed when ``value`` is given.

        ``> 50``, ``< 10``, ``outside 10..20``, ``inside 10..20``.
        """
        lo, hi = self.start, self.end
        if self.inside:
            if lo == -math.inf:
                return f"<= {_plain(hi)}"
            if hi == math.inf:
                return f">= {_plain(lo)}"
            return f"inside {_plain(lo)}..{_plain(hi)}"
        if value is not None and value > hi:
            return f"> {_plain(hi)}"
        if value is not None and value < lo:
            return f"< {_plain(lo)}"
        if lo == -math.inf or lo == 0:
            # ``50`` means 0..50: for the usual non-negative measurements that reads "> 50".
            return f"> {_plain(hi)}"
        if hi == math.inf:
            return f"< {_plain(lo)}"
        return f"outside {_plain(lo)}..{_plain(hi)}"

    def __str__(self) -> str:
        return self.text or self._canonical()

    def _canonical(self) -> str:
        start = "~" if self.start == -math.inf else _plain(self.start)
        end = "" if self.end == math.inf else _plain(self.end)
        prefix = "@" if self.inside else ""
        if start == "0" and end:
            return f"{prefix}{end}"
        return f"{prefix}{start}:{end}"


def _digits(value: int | float) -> str:
    """A huge number described without printing all of it (or converting it to float)."""
    if isinstance(value, int):
        return f"a {int(abs(value).bit_length() * 0.30103) + 1}-digit number"
    return repr(value)


def _plain(value: float) -> str:
    """Plain decimal, never exponent notation (perfdata and summaries need C-locale decimals)."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if float(value).is_integer():
        return str(int(value))
    # Fixed-point from the shortest round-trip repr: 1e-07 -> 0.0000001 (never "0").
    text = format(Decimal(repr(float(value))), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text if text not in {"-0", ""} else "0"


@functools.lru_cache(maxsize=4096)
def stored_range(text: str) -> Range:
    """:meth:`Range.parse`, cached: a replica reads the other replicas' state documents all
    day, and their thresholds are a handful of strings (a Range is immutable, so the answers
    can be shared). ValueError as ``parse`` (not cached)."""
    return Range.parse(text)
