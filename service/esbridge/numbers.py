"""Numbers as text for people and for plugin output: one rule shared by every writer.

Used by the evaluator's summaries and by the Nagios renderer, so a value reads the same in a
status line, a perfdata item and the status page (and neither imports the other).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, localcontext


def format_number(x: float) -> str:
    """A plain C-locale decimal: no exponent, no grouping, integers without ``.0``.

    Up to 6 decimal places for ``|x| >= 1``; 7 significant digits below 1 so that tiny
    values survive (``1e-07`` → ``0.0000001``). Relative error ≤ 5e-7. ``-0`` renders as
    ``0``. Non-finite values render as ``nan``/``inf``/``-inf`` (perfdata never uses this:
    it renders them as ``U``).
    """
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    magnitude = abs(x)
    if magnitude < 1e15 and x.is_integer():
        return str(int(x))  # the common case (counts), without the Decimal machinery
    if 1 <= magnitude < 1e15:
        # Fixed notation never uses an exponent; 6 places as below, trailing zeros dropped.
        return f"{x:.6f}".rstrip("0").rstrip(".")
    exact = Decimal(repr(x))  # shortest text that round-trips, e.g. 0.30000000000000004
    with localcontext() as ctx:
        ctx.prec = 1000  # enough for any double written out in full
        # 6 decimal places, or 7 significant digits for |x| < 1.
        places = 6 if abs(x) >= 1 else 6 - exact.adjusted()
        quantum = Decimal(1).scaleb(-places)
        rounded = exact.quantize(quantum, rounding=ROUND_HALF_EVEN)
        text = format(rounded, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text
