"""``esbridge gate``: a pipeline step asks a running esbridge whether a release is healthy.

It fixes the start of the period once (``--since``, default: when the step starts), then
long-polls ``GET /api/v1/gate`` until the verdict is final or ``--timeout`` runs out, and prints
one line per check. Exit codes: 0 pass, 1 fail, 2 error (bad arguments, esbridge unreachable
or refusing), 3 unknown (no trustworthy data, or no verdict before the timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from esbridge.durations import parse_duration
from esbridge.gate import parse_time

EXIT = {"pass": 0, "fail": 1, "unknown": 3, "pending": 3}
ERROR = 2
LONG_POLL = 60.0  # seconds one request is held at most (below common proxy timeouts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("ESBRIDGE_URL", "http://127.0.0.1:9108"),
        help="esbridge base URL (default: $ESBRIDGE_URL or http://127.0.0.1:9108)",
    )
    parser.add_argument(
        "--check", action="append", default=[], metavar="GLOB", help="check name or glob"
    )
    parser.add_argument("--tag", action="append", default=[], help="checks with this tag")
    parser.add_argument(
        "--for", dest="period", required=True, metavar="DURATION", help="period, e.g. 10m"
    )
    parser.add_argument(
        "--since",
        help="start of the period: unix seconds, ISO 8601 or --since=-5m (fixed once; default now)",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        help="give up (exit 3) when no verdict by then (default: the period + 5m)",
    )
    parser.add_argument(
        "--allow-warning", action="store_true", help="WARNING does not fail the gate"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get("ESBRIDGE_TOKEN_FILE"),
        help="file with the API token when reads need one (or $ESBRIDGE_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print the final answer as JSON")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    return os.environ.get("ESBRIDGE_TOKEN") or None


def _line(check: dict[str, Any]) -> str:
    since = check.get("since_iso") or "-"
    summary = f": {check['summary']}" if check.get("summary") else ""
    return (
        f"{check['verdict'].upper():7} {check['name']}: {check['state']} since {since}"
        f" ({check['reason']}){summary}"
    )


def run(args: argparse.Namespace) -> int:
    """The command's body; returns the exit code."""
    import httpx  # here, not at the top: every other esbridge command starts without it

    started = time.time()
    try:
        period = parse_duration(args.period).total_seconds()
        timeout = parse_duration(args.timeout).total_seconds() if args.timeout else period + 300.0
        token = _token(args)
        # Fixed once: a relative --since=-5m sent as it is would restart the period at every
        # poll, so the gate would never end.
        start = parse_time(args.since, started) if args.since else started
    except (ValueError, OSError) as exc:
        print(f"esbridge gate: {exc}", file=sys.stderr)
        return ERROR
    if not args.check and not args.tag:
        print("esbridge gate: select checks with --check and/or --tag", file=sys.stderr)
        return ERROR
    since = datetime.fromtimestamp(start, UTC).isoformat()
    params: list[tuple[str, str]] = [("for", args.period), ("since", since)]
    params += [("check", c) for c in args.check] + [("tag", t) for t in args.tag]
    if args.allow_warning:
        params.append(("allow", "warning"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    body: dict[str, Any] | None = None
    last_error = ""
    with httpx.Client(base_url=args.url.rstrip("/"), headers=headers) as client:
        while True:
            left = deadline - time.monotonic()
            hold = max(0.0, min(LONG_POLL, left))
            try:
                r = client.get(
                    "/api/v1/gate",
                    params=[*params, ("wait", f"{hold:.3f}s")],
                    timeout=hold + 10.0,
                )
            except httpx.HTTPError as exc:  # esbridge restarting: retry until the deadline
                last_error = f"cannot reach esbridge at {args.url}: {exc!r}"
                if time.monotonic() + 2.0 >= deadline:
                    print(f"esbridge gate: {last_error}", file=sys.stderr)
                    return ERROR
                time.sleep(2.0)
                continue
            if r.status_code == 429:  # too many gates waiting: ask again when told to
                last_error = "esbridge has too many gate requests waiting (HTTP 429)"
                pause = _retry_after(r.headers.get("retry-after"))
                if time.monotonic() + pause >= deadline:
                    print(f"esbridge gate: {last_error}", file=sys.stderr)
                    return ERROR
                time.sleep(pause)
                continue
            if r.status_code != 200:
                try:
                    message = r.json().get("error", r.text)
                except ValueError:
                    message = r.text
                print(f"esbridge gate: HTTP {r.status_code}: {message}", file=sys.stderr)
                return ERROR
            body = r.json()
            if body["verdict"] != "pending" or time.monotonic() >= deadline:
                break
    assert body is not None
    verdict = body["verdict"]
    if verdict == "pending":
        body["reason"] = f"no verdict within the timeout: {body['reason']}"
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        for check in body["checks"]:
            print(_line(check))
        print(f"gate {verdict}: {body['reason']}")
    return EXIT[verdict]


def _retry_after(header: str | None) -> float:
    """Seconds a 429's ``Retry-After`` asks for (1 to 60; 10 when missing or a date)."""
    try:
        return min(60.0, max(1.0, float(header or "")))
    except ValueError:
        return 10.0
