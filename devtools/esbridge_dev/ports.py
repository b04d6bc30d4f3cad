"""Free loopback ports for the harness, handed out once across processes.

Asking the kernel for port 0 and closing the socket leaves a window before the real server
binds; test lanes running side by side can be handed the same port in that window. A
reservation file per port (created exclusively, honoured for a minute) keeps the harness
processes from handing out a port another one is about to bind. Reservations long past
that minute are swept away now and then, so the folder does not grow run after run.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

RESERVED_FOR = 60.0  # seconds; far longer than any server here takes to bind
SWEEP_AFTER = 10 * RESERVED_FOR  # a reservation this old is only litter
_FOLDER = Path(tempfile.gettempdir()) / f"esbridge-harness-ports-{os.getuid()}"
_swept_at = 0.0


def free_port() -> int:
    """A loopback TCP port nobody listens on and no other harness process was just given."""
    _FOLDER.mkdir(mode=0o700, exist_ok=True)
    _sweep()
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if _reserve(_FOLDER / str(port)):
            return port
    return port  # 50 reserved picks in a row: give up guarding rather than fail


def _reserve(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        pass
    try:
        if time.time() - path.stat().st_mtime < RESERVED_FOR:
            return False
        os.utime(path)  # an old reservation: take it over
        return True
    except FileNotFoundError:
        return _reserve(path)


def _sweep() -> None:
    """Delete reservations older than ``SWEEP_AFTER`` (at most once a minute per process)."""
    global _swept_at
    now = time.time()
    if now - _swept_at < RESERVED_FOR:
        return
    _swept_at = now
    with os.scandir(_FOLDER) as entries:
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > SWEEP_AFTER:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass  # another process swept it first
