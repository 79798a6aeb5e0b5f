"""Every error the service answers with, in one place.

``STATUS`` (``web/statuses.py``, framework-free, shared with the ASGI middleware) is the
one table from ``authstate.errors`` codes to HTTP status; an error whose code is not listed
takes its nearest listed ancestor's (by class), so a new leaf added to the tree is answered
sensibly before anyone touches this table. Bodies are RFC 9457 problem details
(``application/problem+json``), except:

* under ``/oauth/`` they are RFC 6749 §5.2 error objects (``{error, error_description}``,
  ``Cache-Control: no-store``, and ``WWW-Authenticate: Basic`` with ``invalid_client``);
* a 401 from a protected resource carries ``WWW-Authenticate: Bearer`` (RFC 6750 §3).

Unknown, expired, revoked and malformed credentials are one answer (``unauthenticated``)
so a caller cannot tell them apart. Validation errors list where and what, never the
rejected input (which may be a password). Anything unexpected is a bare 500 problem: the
traceback goes to the log, never into a response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from authstate import errors
from authstate.authn import REALM, bearer_challenge
from authstate.web.statuses import (
    PROBLEM_JSON,
    PROBLEM_TYPE,
    RETRY_AFTER,
    STATUS,
    TITLES,
    problem_document,
    status_for,
)

__all__ = [
    "STATUS", "TITLES", "TYPE_PREFIX", "UNAUTHENTICATED", "OAuthError", "Problem", "install",
    "oauth_response", "problem_response", "render", "status_for", "unauthenticated",
]

logger = logging.getLogger("authstate.web")

TYPE_PREFIX = PROBLEM_TYPE  # one spelling, shared with the framework-free middleware
OAUTH_PREFIX = "/oauth/"

# Codes whose precise reason must not reach the caller (security invariant 6).
UNAUTHENTICATED: tuple[type[errors.AuthstateError], ...] = (
    errors.SessionNotFound,
    errors.InvalidToken,
)


class Problem(Exception):
    """Raised by routes to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class OAuthError(Exception):
    """Raised by the OAuth endpoints: an RFC 6749 §5.2 error object."""

    def __init__(
        self,
        error: str,
        description: str = "",
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})


def problem_response(
    status: int,
    code: str,
    detail: str = "",
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = problem_document(status, code, detail)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}),
                        media_type=PROBLEM_JSON)


def oauth_response(
    error: str, description: str = "", *, status: int = 400,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    all_headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=all_headers)


def unauthenticated(*, token_presented: bool = False) -> Problem:
    """The one 401 for every missing, unknown, expired or revoked credential."""
    challenge = bearer_challenge("invalid_token" if token_presented else None)
    return Problem(
        401, "unauthenticated", "a valid session cookie or bearer token is required",
        headers={"WWW-Authenticate": challenge},
    )


def _is_oauth(request: Request) -> bool:
    return request.url.path.startswith(OAUTH_PREFIX)


def render(problem: Problem) -> JSONResponse:
    return problem_response(problem.status, problem.code, problem.detail,
                            headers=problem.headers, extra=problem.extra)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return render(exc)


async def _on_oauth(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OAuthError)
    return oauth_response(exc.error, exc.description, status=exc.status, headers=exc.headers)


async def _on_authstate(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.AuthstateError)
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.StoreError):
        _count_store_error(request)
    if isinstance(exc, errors.Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    if _is_oauth(request):
        if isinstance(exc, errors.InvalidScope):
            return oauth_response("invalid_scope", exc.message)
        if isinstance(exc, errors.InvalidGrant):
            return oauth_response("invalid_grant", "the grant is invalid, expired or revoked")
        if isinstance(exc, errors.InvalidClient):  # RFC 6749 §5.2: 401 + the scheme used
            return oauth_response(exc.code, exc.message, status=401,
                                  headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        if isinstance(exc, errors.OAuthRefused):
            return oauth_response(exc.code, exc.message)
        if isinstance(exc, errors.Throttled):
            # RFC 6749 §5.2 has no code for "too many attempts" (``slow_down`` belongs to the
            # device flow, RFC 8628 §3.5): the status and Retry-After carry the meaning.
            return oauth_response("invalid_request", exc.message, status=429, headers=headers)
        if status < 500:
            return oauth_response("invalid_request", exc.message, status=400)
        if status == 503:
            headers["Retry-After"] = str(RETRY_AFTER)
        return oauth_response("temporarily_unavailable", "try again later", status=status,
                              headers=headers)
    if isinstance(exc, UNAUTHENTICATED):
        return render(unauthenticated(token_presented=True))
    if status >= 500:
        if status == 503:
            logger.warning("%s on %s %s", exc.code, request.method, request.url.path)
            return problem_response(status, exc.code, "a backing service is unavailable",
                                    headers={"Retry-After": str(RETRY_AFTER)})
        logger.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.message)
        return problem_response(status, "internal_error", "an internal error occurred")
    return problem_response(status, exc.code, exc.message, headers=headers)


def _count_store_error(request: Request) -> None:
    """The ``authstate_store_errors_total{operation="request"}`` metric, when on."""
    metrics = getattr(getattr(request.app.state, "authstate", None), "metrics", None)
    if metrics is not None:
        metrics.store_error("request")


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        if _is_oauth(request):
            return oauth_response("invalid_request", "the body is not valid")
        return problem_response(400, "invalid_json", "the request body is not valid JSON")
    where = [
        {"loc": [str(x) for x in p.get("loc", ())], "msg": str(p.get("msg", "")),
         "type": str(p.get("type", ""))}
        for p in problems[:20]
    ]
    if _is_oauth(request):
        names = ", ".join(w["loc"][-1] for w in where if w["loc"])
        return oauth_response("invalid_request", f"missing or invalid parameter: {names}")
    return problem_response(422, "validation_failed", "the request is not valid",
                            extra={"errors": where})


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
        415: "unsupported_media_type",
    }.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else ""
    if _is_oauth(request) and exc.status_code == 400:
        return oauth_response("invalid_request", detail)
    if exc.status_code >= 500:
        detail = ""
    return problem_response(exc.status_code, code, detail, headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path,
                 exc_info=exc)
    return problem_response(500, "internal_error", "an internal error occurred")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(OAuthError, _on_oauth)
    app.add_exception_handler(errors.AuthstateError, _on_authstate)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
