"""Skip outside CI, fail under CI: a missing service must never pass silently in CI."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(ok: bool, reason: str) -> None:
    """Do nothing when ok; else pytest.fail(reason) under CI=true, pytest.skip(reason) outside."""
    if ok:
        return
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
