"""What an output told of every recorded result must offer (passive delivery is one).

The service owns its listeners: it starts them with itself, hands each recorded result to
``on_result`` (synchronously, so it must only queue work and never raise), and stops them
after the last result. ``status`` and ``metrics`` are how ``/readyz`` and ``/metrics`` show
them; nothing else reaches into a listener.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import Metric

from esbridge.result import Result

if TYPE_CHECKING:
    from esbridge.store import Transition


class ResultListener(Protocol):
    """A declared output of the service, started and stopped by it."""

    async def start(self) -> None:
        """Called once when the service starts, before the first result."""

    async def stop(self, grace: float) -> None:
        """Called once when the service stops, after the last result; deliver within ``grace``."""

    def on_result(self, result: Result, transition: Transition | None) -> None:
        """A result of a loaded check was recorded (``transition`` when its state changed)."""

    def status(self) -> list[dict[str, Any]]:
        """One entry per destination, for ``/readyz`` and the status page."""
        ...

    def metrics(self) -> Iterator[Metric]:
        """Metric families of this output, read at scrape time."""
        ...
