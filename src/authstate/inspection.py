"""What ``authstate inspect`` knows about a token: its parts decoded with a precise
explanation of anything malformed, its times, its signature when keys are given, and the
lint findings. Shared by the CLI and the service's inspector page, so it lives in the
core rather than in either of them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from authstate.clock import NUMERIC_DATE_MAX
from authstate.errors import AuthstateError, InvalidToken
from authstate.jwt import b64url_decode, verify_compact
from authstate.keys import KeySet
from authstate.lint import Finding, lint, relative

INSPECT_MAX_BYTES = 64 * 1024  # inspect reads more than verify accepts, to explain why
TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Malformed(Exception):
    """The token cannot be decoded; the message is the one line shown."""


def explain_segment(segment: str, part: str) -> bytes:
    """Decode one segment, or say exactly what is wrong with it."""
    for position, char in enumerate(segment):
        if char == "=":
            raise Malformed(f"the {part} has '=' padding at position {position}; JWTs use "
                            "unpadded base64url (RFC 7515 §2)")
        if char not in _ALPHABET:
            shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
            raise Malformed(f"the {part} is not base64url: character {shown} at position "
                            f"{position} is not in the alphabet")
    try:
        return b64url_decode(segment.encode("ascii"), part)
    except AuthstateError as error:
        raise Malformed(error.message) from None


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Header, claims and signature of a compact JWT, without checking the signature."""
    if not token:
        raise Malformed("the token is empty")
    if len(token) > INSPECT_MAX_BYTES:
        raise Malformed(f"the token is {len(token)} bytes; refusing to parse more than "
                        f"{INSPECT_MAX_BYTES} (authstate accepts at most 8192)")
    parts = token.split(".")
    if len(parts) == 5:
        raise Malformed("the token has 5 parts: it is an encrypted JWE, not a signed JWT")
    if len(parts) != 3:
        raise Malformed(f"a JWT has 3 dot-separated parts (header.payload.signature); this "
                        f"one has {len(parts)}")
    decoded = []
    for segment, part in zip(parts, ("header", "payload"), strict=False):
        raw = explain_segment(segment, part)
        try:
            value = json.loads(raw)
        except UnicodeDecodeError:
            raise Malformed(f"the {part} is not UTF-8 text") from None
        except ValueError as error:
            raise Malformed(f"the {part} is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise Malformed(f"the {part} is JSON but not an object")
        decoded.append(value)
    return decoded[0], decoded[1], explain_segment(parts[2], "signature")


def _utc(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def report(
    token: str,
    *,
    keys: KeySet | None,
    secret: bytes | None,
    now: float,
    wordlist: list[str],
) -> dict[str, Any]:
    """Everything inspect knows about ``token``, as one JSON-ready dict."""
    header, claims, _ = decode(token)
    signature: dict[str, Any] = {"status": "unchecked"}
    key_alg: str | None = None
    if keys is not None:
        try:
            verified = verify_compact(token, keys)
            key_alg = verified.key.alg
            signature = {"status": "verified", "kid": verified.key.kid, "alg": key_alg}
        except InvalidToken as error:
            signature = {"status": "invalid", "code": error.code, "message": error.message}
            kid = header.get("kid")
            candidate = keys.get(kid) if isinstance(kid, str) else (
                next(iter(keys)) if len(keys) == 1 else None)
            key_alg = candidate.alg if candidate is not None else None
    findings: list[Finding] = lint(
        header, claims, size=len(token), key_alg=key_alg, secret=secret, wordlist=wordlist
    )
    times: dict[str, Any] = {}
    problems: list[str] = []
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if value is not None:
                problems.append(f"the {name} claim is not a number")
            continue
        if not 0 <= value <= NUMERIC_DATE_MAX:  # the bound every verifier here applies
            problems.append(f"the {name} claim is out of range")
            continue
        utc = _utc(float(value))
        times[name] = {"value": value, "utc": utc, "relative": relative(name, value, now)}
    if "exp" in times and times["exp"]["value"] <= now:
        problems.append(times["exp"]["relative"])
    if "nbf" in times and times["nbf"]["value"] > now:
        problems.append(times["nbf"]["relative"])
    if signature["status"] == "invalid":
        problems.insert(0, f"signature: {signature['message']}")
    problems += [f.message for f in findings if f.severity == "error"]
    return {
        "valid": not problems,
        "problems": problems,
        "header": header,
        "claims": claims,
        "times": times,
        "signature": signature,
        "findings": [f.as_dict() for f in findings],
        "size": len(token),
        "evaluated_at": _utc(now),
    }
