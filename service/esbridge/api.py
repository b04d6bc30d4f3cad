"""The HTTP API: JSON for people and scripts, Nagios text for the plugin, /metrics, probes.

Every route reads the service through its read-only :class:`~esbridge.view.ServiceView`;
nothing queries Elasticsearch except the explicit "run now" operation, which goes through
the scheduler like any scheduled run (:class:`~esbridge.view.Control`). Response bodies are
the pydantic models of :mod:`esbridge.api_models`, so ``/openapi.json`` describes them.
"""

from __future__ import annotations

import fnmatch
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from esbridge import __version__
from esbridge.api_auth import (
    ControlDep,
    ReadDep,
    ViewDep,
    WriteDep,
    guarded,
    require_read,
    require_write,
)
from esbridge.api_models import (
    CheckDetail,
    CheckList,
    CheckSummary,
    ErrorBody,
    HealthAnswer,
    NagiosText,
    NotOwnerBody,
    Readiness,
    ReloadAnswer,
    StatusAnswer,
    Transition,
    result_body,
)
from esbridge.api_preview import router as preview_router
from esbridge.durations import format_duration
from esbridge.errors import ErrorKind
from esbridge.metrics import CheckSeries, exposition, make_registry
from esbridge.nagios import rendered
from esbridge.result import Result, State
from esbridge.store import CheckState, transition_to_dict
from esbridge.view import Control, NotOwner, ServiceView, iso

__all__ = [
    "CheckDetail",
    "CheckList",
    "CheckSummary",
    "ErrorBody",
    "ReadDep",
    "WriteDep",
    "create_app",
    "guarded",
    "nagios_result",
    "require_read",
    "require_write",
]

WEB_DIR = Path(__file__).parent / "web"
STATE_NAMES = [s.name for s in State]


# -- helpers -------------------------------------------------------------------------------


def _not_found(name: str, view: ServiceView) -> HTTPException:
    close = view.close_names(name)
    return HTTPException(404, {"error": f"no check named {name!r}", "did_you_mean": close})


def _summary(entry: CheckState, view: ServiceView, now: float) -> CheckSummary:
    check = view.checks[entry.name]
    result = view.effective(entry, now)
    stale_since = view.stale_since(entry, now)
    return CheckSummary(
        name=entry.name,
        kind=check.kind,
        description=check.description,
        state=result.state.name if result else "PENDING",
        status_code=int(result.state) if result else int(State.UNKNOWN),
        summary=result.summary if result else view.pending(entry.name).summary,
        value=result.value if result and result.error_kind != "stale" else None,
        unit=(result.unit if result else "") or check.unit,
        since=iso(entry.since),
        since_ts=entry.since,
        stale_since=iso(stale_since),
        stale_since_ts=stale_since,
        evaluated_at=iso(entry.result.evaluated_at) if entry.result else None,
        evaluated_at_ts=entry.result.evaluated_at if entry.result else None,
        stale=view.is_stale(entry, now),
        tags=list(check.tags),
        labels=dict(check.labels),
        error=result.error if result else None,
        groups_not_ok=sum(1 for g in (result.groups if result else ()) if g.state is not State.OK),
        owner=view.cluster.owner_of(entry.name) if view.cluster is not None else None,
        age_seconds=round(max(0.0, now - entry.result.evaluated_at), 3) if entry.result else None,
    )


def _group_result(result: Result, group_text: str) -> Result | None:
    group = result.group(group_text)
    return None if group is None else result.for_group(group)


def nagios_result(
    view: ServiceView, name: str, group: str | None, now: float | None = None
) -> Result:
    """The result the plugin shows: staleness applied, one group when asked."""
    entry = view.entry(name)
    if entry is None:
        raise _not_found(name, view)
    result = view.effective(entry, now) or view.pending(name)
    if group:
        if result.error_kind in {"stale", "pending"} or (result.error and not result.groups):
            return result
        picked = _group_result(result, group)
        if picked is None:
            known = ", ".join([g.key_text for g in result.groups][:10]) or "none"
            return result.with_(
                state=State.UNKNOWN,
                summary=f"no group {group} in the last result of {name} (groups: {known})",
                long_output=(),
                perfdata=(),
                groups=(),
                error_kind=ErrorKind.NO_SUCH_GROUP,
            )
        return picked
    return result


# -- the app -------------------------------------------------------------------------------


# The page loads only its own files and is never framed: a summary or a host name from the
# logs that slipped through escaping could still run nothing, and no other site can overlay it.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Static(StaticFiles):
    """The page's files, never sniffed into another type."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def create_app(control: Control) -> FastAPI:
    """The app around a service (anything offering its view, run now and reload).

    The API token is resolved here, once (``ConfigError`` naming the file when it cannot be
    read): requests compare against the token in memory and never read ``api.token_file``.
    """
    control.view.api.resolved_token()
    app = FastAPI(
        title="esbridge",
        version=__version__,
        description=(
            "Threshold checks as Elasticsearch queries: state for Nagios, Icinga 2, "
            "Prometheus and people."
        ),
    )
    view = control.view
    app.state.view = view
    app.state.control = control
    registry = make_registry(view)
    series = CheckSeries(view)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=422)

    error_responses: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "No such check"},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        422: {"model": ErrorBody},
    }
    # For a text/plain route FastAPI files a ``model`` under text/plain; its errors are JSON.
    json_error_responses: dict[int | str, dict[str, Any]] = {
        code: {
            "description": spec.get("description", "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for code, spec in error_responses.items()
    }
    reads, writes = guarded(False, error_responses), guarded(True, error_responses)

    @app.get("/api/v1/checks", response_model=CheckList, **reads)
    async def list_checks(
        view: ViewDep,
        state: Annotated[
            str | None, Query(description="comma-separated states, e.g. CRITICAL,WARNING")
        ] = None,
        tag: Annotated[str | None, Query(description="only checks with this tag")] = None,
        q: Annotated[str | None, Query(description="name glob, e.g. web-*")] = None,
    ) -> CheckList:
        now = time.time()
        wanted = {s.strip().upper() for s in state.split(",")} if state else None
        if wanted and not wanted <= {*STATE_NAMES, "PENDING"}:
            raise HTTPException(
                422, f"unknown state in {state!r}: use {', '.join(STATE_NAMES)} or PENDING"
            )
        items = []
        counts = {name: 0 for name in [*STATE_NAMES, "PENDING"]}
        checks = view.checks
        for entry in view.entries():
            if entry.name not in checks:
                continue
            summary = _summary(entry, view, now)
            counts[summary.state] += 1
            if wanted and summary.state not in wanted:
                continue
            if tag and tag not in summary.tags:
                continue
            if q and not fnmatch.fnmatchcase(
                summary.name, q if any(c in q for c in "*?[") else f"*{q}*"
            ):
                continue
            items.append(summary)
        order = {"CRITICAL": 0, "UNKNOWN": 1, "WARNING": 2, "PENDING": 3, "OK": 4}
        items.sort(key=lambda s: (order[s.state], s.name))
        return CheckList(checks=items, counts=counts, generated_at=now, total=len(checks))

    @app.get("/api/v1/checks/{name}", response_model=CheckDetail, **reads)
    async def check_detail(name: str, view: ViewDep, request: Request) -> CheckDetail:
        now = time.time()
        entry = view.entry(name)
        if entry is None:
            raise _not_found(name, view)
        check = view.checks[name]
        summary = _summary(entry, view, now)
        shown = view.effective(entry, now) or view.pending(name)
        base = str(request.base_url).rstrip("/")
        max_age = int(view.max_age(entry))
        nagios_shown, nagios_text = rendered(shown)
        return CheckDetail(
            **summary.model_dump(),
            definition=check.model_dump(mode="json", exclude_none=True),
            result=result_body(shown) if entry.result else None,
            nagios=NagiosText(text=nagios_text, exit_code=int(nagios_shown.state)),
            previous_state=entry.previous_state.name if entry.previous_state is not None else None,
            last_success_ts=entry.last_success,
            consecutive_failures=entry.consecutive_failures,
            runs=entry.runs,
            errors=dict(entry.errors),
            transitions=[
                Transition(**{**transition_to_dict(t), "at_iso": iso(t.at)})
                for t in reversed(entry.transitions)
            ],
            deploys=view.deploys(check.tags, entry.transitions[0].at)[::-1]
            if entry.transitions
            else [],
            next_run_ts=view.scheduler.next_run(name),
            max_age_seconds=view.max_age(entry),
            plugin_command=f"check_esbridge -H {base} -C {name} --max-age {max_age}",
        )

    @app.get(
        "/api/v1/checks/{name}/nagios",
        response_class=PlainTextResponse,
        dependencies=[ReadDep],
        responses={
            200: {
                "content": {"text/plain": {}},
                "description": "Plugin output; exit code in X-Nagios-Exit-Code",
            },
            **json_error_responses,
        },
    )
    async def check_nagios(
        name: str,
        view: ViewDep,
        group: Annotated[
            list[str] | None,
            Query(description="one group, e.g. host=web-01 (repeat for several group fields)"),
        ] = None,
    ) -> Response:
        result, text = rendered(nagios_result(view, name, ",".join(group) if group else None))
        headers = {"X-Nagios-Exit-Code": str(int(result.state))}
        if result.evaluated_at:
            headers["X-Esbridge-Evaluated-At"] = f"{result.evaluated_at:.3f}"
        return PlainTextResponse(text, headers=headers)

    not_owner = {"model": NotOwnerBody, "description": "Another replica owns it (cluster mode)"}

    @app.post(
        "/api/v1/checks/{name}/run",
        response_model=CheckSummary,
        **guarded(True, {**error_responses, 409: not_owner}),
    )
    async def run_check(name: str, view: ViewDep, control: ControlDep) -> CheckSummary:
        if name not in view.checks:
            raise _not_found(name, view)
        try:
            await control.run_now(name)
        except NotOwner as refused:
            raise HTTPException(
                409, {"error": str(refused), "owner": refused.owner, "owner_url": refused.url}
            ) from None
        entry = view.entry(name)
        if entry is None:  # removed by a reload while it ran
            raise _not_found(name, view)
        return _summary(entry, view, time.time())

    @app.post("/api/v1/reload", response_model=ReloadAnswer, **writes)
    async def reload(view: ViewDep, control: ControlDep) -> JSONResponse:
        status = await control.reload()
        body = ReloadAnswer(
            successful=status.successful,
            error=status.error,
            added=status.added,
            changed=status.changed,
            removed=status.removed,
            checks=len(view.checks),
        )
        return JSONResponse(body.model_dump(), status_code=200 if status.successful else 422)

    @app.get("/healthz", response_model=HealthAnswer)
    async def healthz(view: ViewDep) -> HealthAnswer:
        """The process is alive and its event loop answers."""
        return HealthAnswer(
            status="ok",
            version=__version__,
            uptime_seconds=round(time.time() - view.started_at, 1),
        )

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready"}},
    )
    async def readyz(view: ViewDep) -> JSONResponse:
        """Checks loaded, Elasticsearch reachable, state store writable."""
        body = Readiness.model_validate(view.readiness())
        return JSONResponse(
            body.model_dump(exclude_unset=True), status_code=200 if body.ready else 503
        )

    # HEAD for load balancers and uptime probes that only look at the status code.
    @app.head("/healthz", include_in_schema=False)
    async def healthz_head() -> Response:
        return Response(status_code=200)

    @app.head("/readyz", include_in_schema=False)
    async def readyz_head(view: ViewDep) -> Response:
        return Response(status_code=200 if view.readiness()["ready"] else 503)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[ReadDep])
    async def metrics() -> Response:
        return Response(exposition(series, registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/cluster", response_model=dict[str, Any], dependencies=[ReadDep])
    async def cluster(
        view: ViewDep,
        runs: Annotated[bool, Query(description="add this replica's runs per check")] = False,
    ) -> dict[str, Any]:
        """Replicas sharing the checks: members, last heartbeats, checks owned."""
        if view.cluster is None:
            return {"enabled": False, "replica": None, "live_members": [], "members": []}
        return view.cluster.describe(runs)

    @app.get("/api/v1/status", response_model=StatusAnswer, dependencies=[ReadDep])
    async def status(view: ViewDep) -> JSONResponse:
        """Service facts for the status page header."""
        body = StatusAnswer.model_validate(
            {
                "version": __version__,
                "started_at": view.started_at,
                "checks": len(view.checks),
                "files": view.files,
                "default_interval": format_duration(timedelta(seconds=view.default_interval)),
                **view.readiness(),
            }
        )
        return JSONResponse(body.model_dump(exclude_unset=True))

    app.include_router(preview_router)
    from esbridge.gate_api import router as gate_router  # imports this module: late

    app.include_router(gate_router)

    if (WEB_DIR / "index.html").exists():
        app.mount("/static", _Static(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    return app
