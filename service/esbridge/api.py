"""The HTTP API: JSON for people and scripts, Nagios text for the plugin, /metrics, probes.

Everything here reads the result store through the :class:`~esbridge.app.Service`; nothing
queries Elasticsearch except the explicit "run now" operation, which goes through the runner
like any scheduled run. Dependencies follow FastAPI's style: the service and the token check
are injected, so tests can build an app around any service.
"""

from __future__ import annotations

import fnmatch
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from esbridge import __version__
from esbridge.api_preview import router as preview_router
from esbridge.app import Service
from esbridge.durations import format_duration
from esbridge.events import AfterDeploy, DeployEvent
from esbridge.metrics import CheckSeries, exposition, make_registry
from esbridge.nagios import rendered
from esbridge.result import Result, State
from esbridge.store import CheckState, result_to_dict, transition_to_dict

WEB_DIR = Path(__file__).parent / "web"
STATE_NAMES = [s.name for s in State]


# -- response models (they are the OpenAPI contract) -------------------------------------


class ErrorBody(BaseModel):
    error: str
    did_you_mean: list[str] = Field(default_factory=list)


class CheckSummary(BaseModel):
    name: str
    kind: str
    description: str
    state: str = Field(
        description="OK, WARNING, CRITICAL, UNKNOWN, or PENDING before the first run"
    )
    status_code: int
    summary: str
    value: float | None
    unit: str
    since: str | None
    since_ts: float | None
    evaluated_at: str | None
    evaluated_at_ts: float | None
    stale: bool
    tags: list[str]
    labels: dict[str, str]
    error: str | None
    groups_not_ok: int
    owner: str | None = Field(
        None, description="replica that evaluates the check (cluster mode; null otherwise)"
    )
    age_seconds: float | None = Field(None, description="seconds since the result was made")


class CheckList(BaseModel):
    checks: list[CheckSummary]
    counts: dict[str, int]
    generated_at: float
    total: int


class Transition(BaseModel):
    at: float
    at_iso: str
    from_: str | None = Field(alias="from")
    to: str
    summary: str
    after_deploy: AfterDeploy | None = None

    model_config = {"populate_by_name": True}


class CheckDetail(CheckSummary):
    definition: dict[str, Any]
    result: dict[str, Any] | None
    nagios: dict[str, Any]
    previous_state: str | None
    last_success_ts: float | None
    consecutive_failures: int
    runs: int
    errors: dict[str, int]
    transitions: list[Transition]
    deploys: list[DeployEvent] = Field(
        default_factory=list, description="deploys of a matching tag since the oldest transition"
    )
    next_run_ts: float | None
    max_age_seconds: float
    plugin_command: str


class ReloadAnswer(BaseModel):
    successful: bool
    error: str | None
    added: list[str]
    changed: list[str]
    removed: list[str]
    checks: int


# -- dependencies --------------------------------------------------------------------------


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def _token(service: Service) -> str | None:
    return service.settings.api.resolved_token()


def _check_bearer(request: Request, service: Service) -> None:
    expected = _token(service)
    header = request.headers.get("authorization", "")
    if expected is None:
        return
    if not header:
        raise HTTPException(
            401,
            "this endpoint needs 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            401, "use 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        )
    # Constant-time comparison: the token must not leak through timing.
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(403, "the bearer token is not valid for this esbridge")


def require_write(request: Request, service: ServiceDep) -> None:
    """Run-now and reload change what the service does: they need the token."""
    if _token(service) is None:
        if service.settings.api.allow_unauthenticated_writes:
            return
        raise HTTPException(
            403,
            "no API token is configured, so write endpoints are disabled; set api.token_file "
            "(or ESBRIDGE_API__TOKEN), or api.allow_unauthenticated_writes: true",
        )
    _check_bearer(request, service)


def require_read(request: Request, service: ServiceDep) -> None:
    if service.settings.api.require_token_for_reads:
        _check_bearer(request, service)


ReadDep = Depends(require_read)
WriteDep = Depends(require_write)


# -- helpers -------------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _pending(name: str, service: Service) -> Result:
    next_run = service.scheduler.next_run(name)
    when = f" (first run at {_iso(next_run)})" if next_run else ""
    return Result(
        check=name,
        state=State.UNKNOWN,
        summary=f"pending: not evaluated yet{when}",
        error_kind="pending",
        evaluated_at=0.0,
    )


def _not_found(name: str, service: Service) -> HTTPException:
    close = service.checkset.close_names(name)
    return HTTPException(404, {"error": f"no check named {name!r}", "did_you_mean": close})


def _summary(entry: CheckState, service: Service, now: float) -> CheckSummary:
    check = service.checkset.checks[entry.name]
    result = service.store.effective(entry, now)
    return CheckSummary(
        name=entry.name,
        kind=check.kind,
        description=check.description,
        state=result.state.name if result else "PENDING",
        status_code=int(result.state) if result else int(State.UNKNOWN),
        summary=result.summary if result else _pending(entry.name, service).summary,
        value=result.value if result and result.error_kind != "stale" else None,
        unit=(result.unit if result else "") or check.unit,
        since=_iso(entry.since),
        since_ts=entry.since,
        evaluated_at=_iso(entry.result.evaluated_at) if entry.result else None,
        evaluated_at_ts=entry.result.evaluated_at if entry.result else None,
        stale=service.store.is_stale(entry, now),
        tags=list(check.tags),
        labels=dict(check.labels),
        error=result.error if result else None,
        groups_not_ok=sum(1 for g in (result.groups if result else ()) if g.state is not State.OK),
        owner=service.cluster.owner_of(entry.name) if service.cluster is not None else None,
        age_seconds=round(max(0.0, now - entry.result.evaluated_at), 3) if entry.result else None,
    )


def _group_result(result: Result, group_text: str) -> Result | None:
    group = result.group(group_text)
    return None if group is None else result.for_group(group)


def nagios_result(
    service: Service, name: str, group: str | None, now: float | None = None
) -> Result:
    """The result the plugin shows: staleness applied, one group when asked."""
    entry = service.store.get(name)
    if entry is None or name not in service.checkset.checks:
        raise _not_found(name, service)
    result = service.store.effective(entry, now) or _pending(name, service)
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
                error_kind="no_such_group",
            )
        return picked
    return result


# -- the app -------------------------------------------------------------------------------


def create_app(service: Service) -> FastAPI:
    app = FastAPI(
        title="esbridge",
        version=__version__,
        description=(
            "Threshold checks as Elasticsearch queries: state for Nagios, Icinga 2, "
            "Prometheus and people."
        ),
    )
    app.state.service = service
    registry = make_registry(service)
    series = CheckSeries(service)

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

    @app.get(
        "/api/v1/checks",
        response_model=CheckList,
        dependencies=[ReadDep],
        responses=error_responses,
    )
    async def list_checks(
        service: ServiceDep,
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
        for entry in service.store.all():
            if entry.name not in service.checkset.checks:
                continue
            summary = _summary(entry, service, now)
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
        return CheckList(
            checks=items, counts=counts, generated_at=now, total=len(service.checkset.checks)
        )

    @app.get(
        "/api/v1/checks/{name}",
        response_model=CheckDetail,
        dependencies=[ReadDep],
        responses=error_responses,
    )
    async def check_detail(name: str, service: ServiceDep, request: Request) -> CheckDetail:
        now = time.time()
        entry = service.store.get(name)
        if entry is None or name not in service.checkset.checks:
            raise _not_found(name, service)
        check = service.checkset.checks[name]
        summary = _summary(entry, service, now)
        shown = service.store.effective(entry, now) or _pending(name, service)
        base = str(request.base_url).rstrip("/")
        max_age = int(service.store.max_age(entry))
        nagios_shown, nagios_text = rendered(shown)
        return CheckDetail(
            **summary.model_dump(),
            definition=check.model_dump(mode="json", exclude_none=True),
            result=result_to_dict(shown) if entry.result else None,
            nagios={"text": nagios_text, "exit_code": int(nagios_shown.state)},
            previous_state=entry.previous_state.name if entry.previous_state is not None else None,
            last_success_ts=entry.last_success,
            consecutive_failures=entry.consecutive_failures,
            runs=entry.runs,
            errors=dict(entry.errors),
            transitions=[
                Transition(**{**transition_to_dict(t), "at_iso": _iso(t.at)})
                for t in reversed(entry.transitions)
            ],
            deploys=service.events.matching(
                check.tags, entry.transitions[0].at - service.settings.events.within.total_seconds()
            )[::-1]
            if service.events is not None and entry.transitions
            else [],
            next_run_ts=service.scheduler.next_run(name),
            max_age_seconds=service.store.max_age(entry),
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
        service: ServiceDep,
        group: Annotated[
            list[str] | None,
            Query(description="one group, e.g. host=web-01 (repeat for several group fields)"),
        ] = None,
    ) -> Response:
        result, text = rendered(nagios_result(service, name, ",".join(group) if group else None))
        headers = {"X-Nagios-Exit-Code": str(int(result.state))}
        if result.evaluated_at:
            headers["X-Esbridge-Evaluated-At"] = f"{result.evaluated_at:.3f}"
        return PlainTextResponse(text, headers=headers)

    @app.post(
        "/api/v1/checks/{name}/run",
        response_model=CheckSummary,
        dependencies=[WriteDep],
        responses=error_responses,
    )
    async def run_check(name: str, service: ServiceDep) -> CheckSummary:
        if name not in service.checkset.checks:
            raise _not_found(name, service)
        await service.run_now(name)
        entry = service.store.get(name)
        assert entry is not None
        return _summary(entry, service, time.time())

    @app.post(
        "/api/v1/reload",
        response_model=ReloadAnswer,
        dependencies=[WriteDep],
        responses=error_responses,
    )
    async def reload(service: ServiceDep) -> JSONResponse:
        status = await service.reload()
        body = ReloadAnswer(
            successful=status.successful,
            error=status.error,
            added=status.added,
            changed=status.changed,
            removed=status.removed,
            checks=len(service.checkset.checks),
        )
        return JSONResponse(body.model_dump(), status_code=200 if status.successful else 422)

    @app.get("/healthz", response_model=dict[str, Any])
    async def healthz(service: ServiceDep) -> dict[str, Any]:
        """The process is alive and its event loop answers."""
        return {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - service.started_at, 1),
        }

    @app.get(
        "/readyz", response_model=dict[str, Any], responses={503: {"description": "Not ready"}}
    )
    async def readyz(service: ServiceDep) -> JSONResponse:
        """Checks loaded, Elasticsearch reachable, state store writable."""
        body = service.readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    # HEAD for load balancers and uptime probes that only look at the status code.
    @app.head("/healthz", include_in_schema=False)
    async def healthz_head() -> Response:
        return Response(status_code=200)

    @app.head("/readyz", include_in_schema=False)
    async def readyz_head(service: ServiceDep) -> Response:
        return Response(status_code=200 if service.readiness()["ready"] else 503)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[ReadDep])
    async def metrics() -> Response:
        return Response(exposition(series, registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/cluster", response_model=dict[str, Any], dependencies=[ReadDep])
    async def cluster(
        service: ServiceDep,
        runs: Annotated[bool, Query(description="add this replica's runs per check")] = False,
    ) -> dict[str, Any]:
        """Replicas sharing the checks: members, last heartbeats, checks owned."""
        if service.cluster is None:
            return {"enabled": False, "replica": None, "live_members": [], "members": []}
        return service.cluster.describe(runs)

    @app.get("/api/v1/status", response_model=dict[str, Any], dependencies=[ReadDep])
    async def status(service: ServiceDep) -> dict[str, Any]:
        """Service facts for the status page header."""
        return {
            "version": __version__,
            "started_at": service.started_at,
            "checks": len(service.checkset.checks),
            "files": list(service.checkset.files),
            "default_interval": format_duration(service.settings.defaults.interval),
            **service.readiness(),
        }

    app.include_router(preview_router)
    from esbridge.gate_api import router as gate_router  # imports this module: late

    app.include_router(gate_router)

    if (WEB_DIR / "index.html").exists():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return app
