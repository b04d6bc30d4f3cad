"""Headless Chromium on a closed network, for the status page test and its bench.

Without these flags Chromium floods the closed network with connection attempts
(/work/shared/pitfalls.md); both tests/test_status_page.py and bench/status_page_paint.py
launch it through Playwright with exactly this list.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
