"""From an error to its HTTP answer, with no framework: the one code → status table.

Shared by the pure ASGI middleware (which answers an outage itself) and the FastAPI
service's handlers (``web/problems.py``), so both spell a problem document, a status and
``Retry-After`` the same way without the middleware importing FastAPI.

``STATUS`` maps ``authstate.errors`` codes to HTTP status; an error whose code is not
listed takes its nearest listed ancestor's (by class), so a new leaf added to the tree is
answered sensibly before anyone touches this table.
"""

from __future__ import annotations

import json
from typing import Any

from authstate import errors

RETRY_AFTER = 5  # seconds; a blip usually heals within it, and clients retry no faster
PROBLEM_JSON = "application/problem+json"  # RFC 9457 §3
PROBLEM_TYPE = "urn:authstate:problem:"

STATUS: dict[str, int] = {
    errors.AuthstateError.code: 500,
    errors.InsufficientScope.code: 403,
    errors.ConfigurationError.code: 500,
    errors.StoreError.code: 503,
    errors.BusUnavailable.code: 503,
    errors.KeysUnavailable.code: 503,
    errors.UpstreamUnavailable.code: 503,
    errors.CSRFFailed.code: 403,
    errors.SessionNotFound.code: 401,
    errors.InvalidToken.code: 401,
    errors.InvalidGrant.code: 400,
    errors.OAuthRefused.code: 400,
    errors.InvalidClient.code: 401,
    errors.AuthenticationFailed.code: 401,
    errors.Throttled.code: 429,
    errors.Conflict.code: 409,
    errors.NotFound.code: 404,
    errors.Refused.code: 409,
    errors.InvalidInput.code: 422,
}

TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def status_for(error: errors.AuthstateError) -> int:
    """The status of ``error``'s code, else of the nearest ancestor's code in ``STATUS``."""
    for cls in type(error).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in STATUS:
            return STATUS[code]
    return 500


def problem_document(status: int, code: str, detail: str = "") -> dict[str, Any]:
    """An RFC 9457 problem document as the service writes them."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    return body


def problem_body(status: int, code: str, title: str = "", detail: str = "") -> bytes:
    """``problem_document`` as compact JSON bytes, for a raw ASGI answer."""
    body = problem_document(status, code, detail)
    if title:
        body["title"] = title
    return json.dumps(body, separators=(",", ":")).encode()
