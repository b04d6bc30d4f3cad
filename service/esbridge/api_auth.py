"""The API's dependencies: the read-only view, the service's two operations, the bearer token.

The token is FastAPI's ``HTTPBearer`` security scheme, so ``/openapi.json`` declares it; the
comparison stays constant-time (``hmac.compare_digest``): the token must not leak through
timing. The token is read once, when the app is built (``ApiConfig.resolved_token``, called
by ``create_app``); a request compares against the copy in memory and never reads
``api.token_file``, so a file that became unreadable cannot turn requests into 500s (a
rotated token takes effect at the next restart). Every dependency is ``async``: FastAPI runs
a plain ``def`` dependency in a worker thread, and those hops were most of the time of a
``check_esbridge`` request.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from esbridge.view import Control, ServiceView

bearer = HTTPBearer(
    auto_error=False,
    description="api.token_file (or ESBRIDGE_API__TOKEN): needed for run now, reload and "
    "deploy events, and for reads when api.require_token_for_reads is set",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_view(request: Request) -> ServiceView:
    return request.app.state.view


async def get_control(request: Request) -> Control:
    return request.app.state.control


ViewDep = Annotated[ServiceView, Depends(get_view)]
ControlDep = Annotated[Control, Depends(get_control)]


def _given(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None:  # called directly (not as a dependency): read the header
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        return token if scheme.lower() == "bearer" and token else None
    return credentials.credentials


def check_bearer(
    request: Request, view: ServiceView, credentials: HTTPAuthorizationCredentials | None = None
) -> None:
    expected = view.api.resolved_token()  # from memory: resolved when the app was built
    if expected is None:
        return
    given = _given(request, credentials)
    if given is None:
        message = (
            "use 'Authorization: Bearer <token>'"
            if request.headers.get("authorization")
            else "this endpoint needs 'Authorization: Bearer <token>'"
        )
        raise HTTPException(401, message, {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(403, "the bearer token is not valid for this esbridge")


async def require_write(request: Request, view: ViewDep, credentials: Credentials = None) -> None:
    """Run-now, reload and deploy events change what the service does: they need the token."""
    if view.api.resolved_token() is None:
        if view.api.allow_unauthenticated_writes:
            _not_from_another_site(request)
            return
        raise HTTPException(
            403,
            "no API token is configured, so write endpoints are disabled; set api.token_file "
            "(or ESBRIDGE_API__TOKEN), or api.allow_unauthenticated_writes: true",
        )
    check_bearer(request, view, credentials)


def _not_from_another_site(request: Request) -> None:
    """Without a token, a write is refused when a browser says another site's page sent it
    (a form or ``fetch`` an open tab fires at the operator's esbridge). Scripts and ``curl``
    send no ``Origin``; the status page itself writes nothing."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    foreign = site in ("cross-site", "same-site") or (
        origin is not None and urlsplit(origin).netloc != request.headers.get("host")
    )
    if foreign:
        raise HTTPException(
            403,
            "a write sent by another site's page is refused (allow_unauthenticated_writes "
            "takes writes from scripts, not from browsers on other sites; set api.token_file "
            "to write with the token)",
        )


async def require_read(request: Request, view: ViewDep, credentials: Credentials = None) -> None:
    if view.api.require_token_for_reads:
        check_bearer(request, view, credentials)


ReadDep = Depends(require_read)
WriteDep = Depends(require_write)


def guarded(write: bool, responses: Mapping[int | str, Any]) -> dict[str, Any]:
    """Route options of a JSON endpoint: who may call it, and the errors it documents."""
    return {"dependencies": [WriteDep if write else ReadDep], "responses": dict(responses)}
