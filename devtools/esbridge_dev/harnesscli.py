"""``python -m esbridge_dev.elasticsearch|opensearch start|stop|status|url|fetch``.

``start`` detaches a server and records it in a state file in the cache folder, so a
developer keeps one long-lived instance across test runs (``make es-start``/``es-stop``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import httpx

from esbridge_dev import httpcalls
from esbridge_dev.distribution import (
    ELASTICSEARCH,
    Distribution,
    ElasticsearchError,
    cache_dir,
    fetch,
    modules,
)
from esbridge_dev.elasticsearch import ElasticsearchServer
from esbridge_dev.procgroup import group_alive, kill_group


def _state_file(dist: Distribution = ELASTICSEARCH) -> Path:
    name = "instance.json" if dist is ELASTICSEARCH else f"instance-{dist.name}.json"
    return cache_dir() / name


def _read_state(dist: Distribution = ELASTICSEARCH) -> dict[str, object] | None:
    f = _state_file(dist)
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def _cmd_start(args: argparse.Namespace) -> int:
    dist: Distribution = args.dist
    st = _read_state(dist)
    if st and group_alive(int(st["pid"])):  # type: ignore[arg-type]
        print(f"already running: pid {st['pid']} at {st['url']}", file=sys.stderr)
        print(f"export ESBRIDGE_TEST_ES_URL={st['url']}")
        return 0
    srv = ElasticsearchServer(version=args.version, port=args.port, dist=dist)
    try:
        srv.start()
    except ElasticsearchError as e:
        print(str(e), file=sys.stderr)
        return 1
    state = srv.detach()
    state["start_seconds"] = round(srv.start_seconds or 0, 1)
    _state_file(dist).write_text(json.dumps(state, indent=2) + "\n")
    print(
        f"# {dist.product} {state['version']} pid {state['pid']} started in "
        f"{state['start_seconds']}s; log {state['log']}",
        file=sys.stderr,
    )
    print(f"export ESBRIDGE_TEST_ES_URL={state['url']}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    dist: Distribution = args.dist
    st = _read_state(dist)
    if not st:
        print(f"no {dist.product} started by this tool", file=sys.stderr)
        return 0
    pid = int(st["pid"])  # type: ignore[arg-type]
    if group_alive(pid):
        kill_group(pid)
    shutil.rmtree(str(st["workdir"]), ignore_errors=True)
    _state_file(dist).unlink(missing_ok=True)
    print(f"stopped {dist.product} pid {pid} ({st['url']})", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    dist: Distribution = args.dist
    st = _read_state(dist)
    if not st:
        print("not running (no state file)")
        return 3
    alive = group_alive(int(st["pid"]))  # type: ignore[arg-type]
    health = "?"
    if alive:
        try:
            health = httpcalls.get(f"{st['url']}/_cluster/health", timeout=5).json()["status"]
        except (httpx.HTTPError, ValueError, KeyError) as e:
            health = f"unreachable ({e})"
    word = "running" if alive else "dead"
    print(f"{word}: {dist.product} {st['version']} pid {st['pid']} {st['url']} health={health}")
    return 0 if alive else 1


def _cmd_url(args: argparse.Namespace) -> int:
    st = _read_state(args.dist)
    if not st or not group_alive(int(st["pid"])):  # type: ignore[arg-type]
        print("not running", file=sys.stderr)
        return 1
    print(st["url"])
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        home = fetch(args.version, args.dist)
    except ElasticsearchError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"{home} ({time.monotonic() - t0:.1f}s; modules: {', '.join(modules(home))})")
    return 0


def main(argv: list[str] | None = None, dist: Distribution = ELASTICSEARCH) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(prog=f"python -m esbridge_dev.{dist.name}")
    p.set_defaults(dist=dist)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help=f"start a detached {dist.product}, print its URL")
    s.add_argument("--version", default=dist.default)
    s.add_argument("--port", type=int, default=None)
    s.set_defaults(fn=_cmd_start)
    sub.add_parser("stop", help=f"stop the detached {dist.product}").set_defaults(fn=_cmd_stop)
    sub.add_parser("status").set_defaults(fn=_cmd_status)
    sub.add_parser("url").set_defaults(fn=_cmd_url)
    f = sub.add_parser("fetch", help="download and unpack only")
    f.add_argument("--version", default=dist.default)
    f.set_defaults(fn=_cmd_fetch)
    args = p.parse_args(argv)
    return args.fn(args)
