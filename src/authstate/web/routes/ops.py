"""Operating the service: the audit trail for admins and Prometheus metrics.

``GET /admin/audit`` pages through the audit trail newest first (the ``next_before`` of
one page is the ``before`` of the next); only an admin user may read it, by session
cookie or bearer token. ``GET /metrics`` is the Prometheus exposition of this process's
counters; it holds counts, never identities or credentials, and answers 404 when
``Settings.service.metrics`` is off. Counts still tell an outsider login failure rates and reuse
detections, so with ``Settings.service.metrics_token`` set the scrape must present that token as
``Authorization: Bearer`` (compared in constant time) or gets a 401 with a challenge.
With ``Settings.service.metrics_address`` set, ``/metrics`` lives only on that separate listener
(``metrics_router`` in ``web.app.create_metrics_app``) and the main port answers 404.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from authstate.audit import PAGE_MAX, parse_since
from authstate.authn import Credentials
from authstate.web.caller import Caller, CallerDep, StateDep
from authstate.web.middleware import bearer_challenge
from authstate.web.problems import Problem
from authstate.web.routes import admin
from authstate.web.schemas import problems

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])


async def require_admin(caller: CallerDep) -> Caller:
    """The caller, if an admin; 403 otherwise (401 first when nobody is calling)."""
    admin.require_admin(caller)
    return caller


class AuditEventOut(BaseModel):
    id: str | None
    type: str
    time: str = Field(description="ISO 8601, UTC.")
    ts: float
    actor: str | None
    user_id: str | None
    session: str | None = Field(description="The session's public handle.")
    ip: str | None
    user_agent: str | None
    token_fp: str | None = Field(description="A token fingerprint, never the token.")
    detail: dict[str, Any]


class AuditPageOut(BaseModel):
    events: list[AuditEventOut]
    next_before: str | None = Field(description="Pass as `before` for the next page.")
    next: str | None = Field(description="The next page's URL, or null at the end.")


@router.get(
    "/admin/audit",
    response_model=AuditPageOut,
    responses=problems(401, 403, 422, 503),
    summary="The audit trail, newest first, filtered and paginated (admin only)",
    dependencies=[Depends(require_admin)],
)
async def audit_trail(
    request: Request,
    state: StateDep,
    user: Annotated[str | None, Query(min_length=1, max_length=128,
                                      description="Only events about this user ID.")] = None,
    type: Annotated[str | None, Query(min_length=1, max_length=64,
                                      description="Only this event type.")] = None,
    since: Annotated[str | None, Query(min_length=1, max_length=64,
                                       description="An age (30m, 24h, 7d), ISO 8601 time "
                                                   "or epoch seconds.")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
    before: Annotated[str | None, Query(min_length=1, max_length=64,
                                        description="`next_before` of the previous page.")]
    = None,
) -> JSONResponse:
    since_ts = parse_since(since, state.clock.now()) if since is not None else None
    page = await state.audit.query(
        user_id=user, type=type, since=since_ts, before=before, limit=limit
    )
    next_url = None
    if page.next_before is not None:
        params = {k: v for k, v in request.query_params.items() if k != "before"}
        next_url = f"{request.url.path}?{urlencode({**params, 'before': page.next_before})}"
    body = AuditPageOut(
        events=[AuditEventOut(**e.to_json()) for e in page.events],
        next_before=page.next_before,
        next=next_url,
    )
    headers = {"Cache-Control": "no-store"}
    if next_url is not None:
        headers["Link"] = f'<{next_url}>; rel="next"'
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"},
               **problems(401, 404)},
    summary="Prometheus metrics of this process",
)
async def metrics(request: Request, state: StateDep) -> Response:
    if state.metrics is None:
        raise Problem(404, "not_found", "metrics are switched off (AUTHSTATE_METRICS=false)")
    if state.settings.service.metrics_address is not None and not getattr(
        request.app.state, "metrics_listener", False
    ):
        raise Problem(404, "not_found", "metrics are served on AUTHSTATE_METRICS_ADDRESS")
    required = state.settings.service.metrics_token
    if required is not None:
        credentials = Credentials(request.scope)  # the one Authorization parser
        presented = credentials.bearer
        if not presented or not secrets.compare_digest(
            presented.encode(), required.get_secret_value().encode()
        ):
            raise Problem(
                401, "unauthenticated", "GET /metrics needs the metrics bearer token",
                headers={"WWW-Authenticate": bearer_challenge(
                    "invalid_token" if credentials.presents_bearer else None
                )},
            )
    await state.refresh_gauges()
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
