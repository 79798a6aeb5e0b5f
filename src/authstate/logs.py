"""Structured logs for the service: one JSON object per line, with secrets redacted.

The code never logs a whole credential (it logs fingerprints); ``redact`` is the last line
of defence for what slips through anyway: a token pasted into a URL that an access log
prints, a library that logs a header. It replaces anything shaped like a credential (a
JWT, a long base64url run such as a session ID or refresh token, an ``Authorization``
value, a PEM private key) with ``[redacted:<fingerprint>]``, so two lines about the same
token still correlate. It cannot recognise a password, which is why nothing logs one.

``configure_logging`` installs one JSON handler on the root logger (uvicorn's loggers
included when uvicorn runs with ``log_config=None``) and caps the chatty libraries whose
DEBUG output could carry request data.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

from authstate.sessions import fingerprint

AUDIT_ATTRIBUTE = "audit_event"

# Noisy at DEBUG and able to echo request content; held at INFO whatever the level.
QUIET_LOGGERS = ("httpcore", "httpx", "multipart", "python_multipart", "asyncio", "uvicorn.asgi")

# Public identifiers: a key ID (often a 43-character JWK thumbprint), a token's jti, a
# refresh family or session reference. Knowing one grants nothing.
NOT_SECRET_KEYS = frozenset({"kid", "jti", "family", "family_id", "sid", "client_id"})

_JWT = r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"
_PEM = r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
_AUTH = r"(?i:\b(?:bearer|basic)\s+)([A-Za-z0-9._~+/=-]{8,})"
# A run of 32+ base64url characters that is not plain hex (hex, dashes allowed, is how
# authstate prints digests, handles, fingerprints and UUIDs, never secrets) and has an
# upper-case letter or a digit (so long snake_case identifiers survive). A random
# 32-character token fails that last test with probability (28/64)**32, about 3e-12.
_RUN = (
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z0-9])"
    r"(?![0-9a-f-]+(?![A-Za-z0-9_-]))[A-Za-z0-9_-]{32,}"
)
_PATTERN = re.compile(f"({_PEM})|({_JWT})|{_AUTH}|({_RUN})")


def _replace(match: re.Match[str]) -> str:
    whole = match.group(0)
    secret = next(g for g in match.groups() if g is not None)
    return whole.replace(secret, f"[redacted:{fingerprint(secret)}]")


def redact(text: str) -> str:
    """``text`` with every credential-shaped substring replaced by its fingerprint."""
    return _PATTERN.sub(_replace, text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside a JSON-like value, except under keys that
    name public identifiers which merely look random (``NOT_SECRET_KEYS``)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            str(k): v if k in NOT_SECRET_KEYS and isinstance(v, str) else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def _iso(ts: float) -> str:
    """Every log line's time in one format, whether the record's or an audit event's."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, and the audit event's
    fields when the record carries one; everything passes through ``redact``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # which worker, when ``serve --workers`` runs several
        }
        event = getattr(record, AUDIT_ATTRIBUTE, None)
        if isinstance(event, dict):
            entry["event"] = "audit"
            entry.update(redact_value(event))
            if isinstance(event.get("ts"), (int, float)):
                entry["ts"] = _iso(float(event["ts"]))
        else:
            entry["message"] = redact(record.getMessage())
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, separators=(",", ":"), default=str)


class _Installed(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure_logging`` installed, so a second call replaces it.

    Without an explicit stream it writes to whatever ``sys.stderr`` is at emit time, so a
    stream swapped out and closed by an embedding program (or a test runner) is never
    written to afterwards."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "INFO", *, stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's records to ``stream`` (stderr) as redacted JSON lines."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Installed)]:
        root.removeHandler(handler)
    handler = _Installed(stream)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler
