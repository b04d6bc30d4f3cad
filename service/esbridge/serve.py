"""Process entry points: ``esbridge serve`` (the service) and ``esbridge run`` (one check now).

``serve`` runs uvicorn with the FastAPI app; the service starts in the app's lifespan, SIGHUP
reloads the check files, SIGTERM stops scheduling, lets in-flight runs finish within a bound,
flushes state and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from esbridge import limits
from esbridge.app import Service
from esbridge.config import Settings
from esbridge.esclient import Connections
from esbridge.httplimits import GuardedH11Protocol, RequestLimits
from esbridge.loader import CheckSet, load_checks
from esbridge.nagios import render, rendered
from esbridge.result import Result
from esbridge.runner import Runner

log = logging.getLogger("esbridge")

SHUTDOWN_GRACE = 10.0


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the configuration, for the log redaction filter."""
    values: list[str] = []
    for connection in settings.elasticsearch.values():
        with contextlib.suppress(Exception):
            for secret in (connection.resolved_password(), connection.resolved_api_key()):
                if secret:
                    values.append(secret)
    with contextlib.suppress(Exception):
        token = settings.api.resolved_token()
        if token:
            values.append(token)
    for target in settings.passive:
        resolve = getattr(target, "resolved_password", None)
        if resolve is not None:
            with contextlib.suppress(Exception):
                if secret := resolve():
                    values.append(secret)
    return values


def tune_gc() -> None:
    """Collect less often: a cycle makes many short-lived objects (answers, results).

    Profiles in bench/ showed the default generation-0 threshold (700) spending about 40 %
    of a cycle's CPU in the collector at 5,000 checks; 10,000 brings that near zero, and
    freezing what is loaded at start keeps the definitions out of every collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def build_app(service: Service) -> FastAPI:
    """The FastAPI app with the service's lifecycle bound to it."""
    from esbridge.api import create_app

    app = create_app(service)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references

        def on_sighup() -> None:
            task = loop.create_task(service.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        _flag_stopping_on_signals(service)
        await service.start()
        try:
            yield
        finally:
            await service.stop(SHUTDOWN_GRACE)

    app.router.lifespan_context = lifespan
    return app


def _flag_stopping_on_signals(service: Service) -> None:
    """Set ``service.stopping`` the moment SIGTERM/SIGINT arrives, then let uvicorn go on.

    uvicorn waits for requests in flight before the lifespan ends; a gate request held by
    ``wait`` sees the flag and answers at once instead of delaying the shutdown.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(num: int, frame: Any, previous: Any = previous) -> None:
            service.stopping = True
            previous(num, frame)

        with contextlib.suppress(ValueError):  # not the main thread: leave it to uvicorn
            signal.signal(signum, handler)


def serve(settings: Settings, checkset: CheckSet | None = None) -> int:
    """Run the service until SIGTERM/SIGINT. Raises ``CheckFileError`` on bad check files.

    ``checkset``: the check files as already loaded and validated by the caller.
    """
    service = (
        Service(settings, checkset) if checkset is not None else Service.from_settings(settings)
    )
    tune_gc()
    app = build_app(service)
    raise_open_files_limit()
    config = uvicorn.Config(
        RequestLimits(app),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        lifespan="on",
        http=GuardedH11Protocol,
        timeout_keep_alive=limits.KEEP_ALIVE_TIMEOUT,
        h11_max_incomplete_event_size=limits.MAX_HEADER_BYTES,
    )
    server = uvicorn.Server(config)
    log.info("listening on http://%s:%d", settings.host, settings.port)
    # uvicorn handles SIGTERM/SIGINT itself, shuts down cleanly, then restores the previous
    # handlers and raises the signal again; with the default handlers still in place that
    # kills the process (exit -15) after a clean shutdown. A no-op handler makes the
    # re-raise harmless, so a clean stop exits 0 as the contract says.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_after_shutdown)
    server.run()
    return 0 if server.started else 1


def raise_open_files_limit() -> None:
    """Soft open-files limit up to the hard limit (often 1,024 → 524,288).

    The connection bound (limits.MAX_CONNECTIONS) keeps the API far below either; the
    headroom is for Elasticsearch connections and files, so accept() never meets EMFILE.
    """
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65_536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65_536), hard))


def _ignore_after_shutdown(signum: int, frame: Any) -> None:
    log.debug("signal %d after shutdown ignored", signum)


async def run_checks(settings: Settings, names: list[str], at: float | None = None) -> list[Result]:
    """Evaluate named checks now (or as at ``at``), without the service (``esbridge run``)."""
    checkset = load_checks(list(settings.checks))
    checks = []
    for name in names:
        check = checkset.get(name)
        if check is None:
            close = checkset.close_names(name)
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            raise KeyError(f"no check named {name!r}{hint}")
        checks.append(check)
    connections = Connections(dict(settings.elasticsearch))
    try:
        moment = time.time() if at is None else at
        return await Runner(connections, settings.defaults.timeout).run(checks, moment)
    finally:
        await connections.close()


def run_one_text(settings: Settings, name: str, at: float | None = None) -> tuple[str, int]:
    """(Nagios text, exit code) of one check evaluated now (or as at ``at``)."""
    result, text = rendered(asyncio.run(run_checks(settings, [name], at))[0])
    return text, int(result.state)


def preview_one(
    settings: Settings,
    name: str,
    since: str,
    step: str | None,
    until: float | None,
    output: str,
    max_points: int,
) -> str:
    """``esbridge preview``: the check replayed over the past, as text or JSON."""
    import json

    from esbridge.durations import parse_duration
    from esbridge.preview import (
        PreviewError,
        default_step,
        preview_on_own_connection,
        preview_to_dict,
    )
    from esbridge.previewtext import render_text

    checkset = load_checks(list(settings.checks))
    check = checkset.get(name)
    if check is None:
        close = checkset.close_names(name)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"no check named {name!r}{hint}")
    span = parse_duration(since)
    every = parse_duration(step) if step else default_step(check, span, settings.defaults.interval)
    config = settings.elasticsearch.get(check.cluster)
    if config is None and not check.is_cluster_kind:
        raise KeyError(f"check {name!r} uses connection {check.cluster!r}, which is not configured")

    async def go() -> str:
        preview = await preview_on_own_connection(
            check, config, span, every, until, max_points, settings.preview.timeout
        )
        if preview.error is not None:
            raise PreviewError("elasticsearch", preview.error)
        if output == "json":
            return json.dumps(preview_to_dict(preview, render), indent=2)
        return render_text(preview)

    return asyncio.run(go())
