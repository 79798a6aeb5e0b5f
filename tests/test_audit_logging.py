"""Structured JSON logs and the redaction that backs up "never log a credential"."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator

import pytest

from authstate.audit import AuditLog
from authstate.clock import FrozenClock
from authstate.logs import QUIET_LOGGERS, JsonFormatter, configure_logging, redact, redact_value
from authstate.sessions import fingerprint
from authstate.stores import open_store


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    "secret",
    [
        secrets.token_urlsafe(32),  # a session ID
        "rt_" + secrets.token_urlsafe(32),  # a prefixed refresh token
        secrets.token_urlsafe(24),  # 32 characters
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1XzEyMyJ9." + secrets.token_urlsafe(64),
    ],
)
@pytest.mark.parametrize("template", ["{}", "token={}&x=1", "cookie: __Host-session={}; Path=/", "'{}'"])
def test_redact_hides_credential_shapes(secret: str, template: str) -> None:
    line = template.format(secret)
    out = redact(line)
    assert secret not in out
    assert f"[redacted:{fingerprint(secret)}]" in out


def test_redact_authorization_values() -> None:
    out = redact("Authorization: Basic Y2xpZW50OnMzY3JldA== and Bearer short.tok.en1")
    assert "Y2xpZW50OnMzY3JldA==" not in out and "short.tok.en1" not in out
    assert out.startswith("Authorization: Basic [redacted:")


def test_redact_private_key_block() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGr1\n-----END PRIVATE KEY-----"
    assert "MC4CAQAw" not in redact(f"loaded {pem} ok")


@pytest.mark.parametrize(
    "harmless",
    [
        "user u_Ab3dEfGhIjKlMnOp logged in",  # an 18-character user ID
        "digest " + "ab12" * 16,  # a SHA-256 hex digest
        "handle 0123456789abcdef fp 89abcdef",
        "user 3f2b5a9c-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
        "refresh_reuse_detected_revokes_the_whole_family",
        "POST /oauth/token 200",
    ],
)
def test_redact_leaves_identifiers_alone(harmless: str) -> None:
    assert redact(harmless) == harmless


def test_redact_value_walks_json_but_keeps_public_ids() -> None:
    token = secrets.token_urlsafe(32)
    value = {"a": [token, {"b": token}], "kid": token, "n": 3}
    out = redact_value(value)
    assert token not in json.dumps(out["a"])
    assert out["kid"] == token and out["n"] == 3


def test_json_formatter_one_object_per_line() -> None:
    token = secrets.token_urlsafe(32)
    record = logging.LogRecord("authstate.x", logging.WARNING, __file__, 1, "saw %s", (token,), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "authstate.x"
    assert entry["message"] == f"saw [redacted:{fingerprint(token)}]"
    assert entry["ts"].endswith("+00:00")


def test_json_formatter_redacts_tracebacks() -> None:
    token = secrets.token_urlsafe(32)
    try:
        raise RuntimeError(f"boom {token}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError" in entry["exc"] and token not in entry["exc"]


async def test_audit_events_log_as_flat_json(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    configure_logging("DEBUG", stream=stream)  # idempotent: still one handler
    store = await open_store("memory://")
    token = secrets.token_urlsafe(32)
    await AuditLog(store, FrozenClock()).record(
        "token_revoked", actor="client:c1", user_id="u1", token=token, detail={"kind": "access"}
    )
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /x?access_token=%s" 200', token)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    audit = [e for e in lines if e.get("event") == "audit"]
    assert len(audit) == 1
    assert audit[0]["type"] == "token_revoked" and audit[0]["actor"] == "client:c1"
    assert audit[0]["token_fp"] == fingerprint(token) and audit[0]["logger"] == "authstate.audit"
    access = [e for e in lines if e["logger"] == "uvicorn.access"]
    assert len(access) == 1 and "[redacted:" in access[0]["message"]
    assert token not in stream.getvalue()


def test_configure_logging_quietens_chatty_libraries(restore_logging: None) -> None:
    configure_logging("DEBUG", stream=io.StringIO())
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("authstate.sessions").getEffectiveLevel() == logging.DEBUG
