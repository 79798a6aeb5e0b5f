"""What ``authstate inspect`` says about a token beyond "valid or not".

Each finding has a stable ``code``, a severity and a sentence. ``error`` findings are
what authstate itself would refuse (an unsigned or mismatched algorithm, key headers an
attacker controls, a guessable HMAC secret, no expiry); ``warning`` findings are habits
that hurt later (long lifetimes, missing audience, issuer or ID, personal data in a
token that every service and every log sees, tokens too big for a header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from authstate.clock import LONG_LIFETIME
from authstate.jose.weakkeys import weak_secret_reason

Severity = Literal["error", "warning", "info"]

LARGE_TOKEN = 1024
PERSONAL_CLAIMS = frozenset(
    {
        "email", "name", "given_name", "family_name", "middle_name", "nickname",
        "phone", "phone_number", "mobile", "address", "street_address", "postal_code",
        "birthdate", "date_of_birth", "dob", "gender", "ssn", "national_id", "passport",
        "ip", "ip_address", "location", "first_name", "last_name", "full_name",
    }
)
UNTRUSTED_HEADERS = ("jku", "x5u", "x5c", "jwk")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{6,18}[0-9]$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_KID_SAFE = re.compile(r"^[A-Za-z0-9._:@+=-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


def _personal(claims: Mapping[str, Any]) -> list[str]:
    found = []
    for name, value in claims.items():
        if name.lower() in PERSONAL_CLAIMS or (isinstance(value, str) and (_EMAIL.match(value) or (
            _PHONE.match(value) and not _DATE.match(value)
            and sum(c.isdigit() for c in value) >= 8
            and name not in ("iat", "exp", "nbf", "jti", "sub", "sid")
        ))):
            found.append(name)
    return found


def lint(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    size: int,
    key_alg: str | None = None,
    secret: bytes | None = None,
    wordlist: Iterable[str] = (),
) -> list[Finding]:
    """The findings for a decoded token. ``key_alg`` is the algorithm of the key it was
    checked with (if any); ``secret`` the HMAC secret given (if any)."""
    findings: list[Finding] = []
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        findings.append(Finding("alg_none", "error",
                                "the token is unsigned (alg none or missing): anyone can forge it"))
    elif key_alg is not None and alg != key_alg:
        findings.append(Finding(
            "alg_mismatch", "error",
            f"the header says {alg} but the key is for {key_alg}: the key decides the "
            "algorithm, never the token (algorithm confusion)"))
    for name in UNTRUSTED_HEADERS:
        if name in header:
            findings.append(Finding(
                "untrusted_header", "error",
                f"the {name} header points at a key chosen by the token's author; "
                "verifiers must never fetch or trust it"))
    if "crit" in header:
        findings.append(Finding("crit_header", "warning",
                                "the token has critical extensions (crit) most verifiers reject"))
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not _KID_SAFE.match(kid)):
        findings.append(Finding(
            "suspicious_kid", "warning",
            "the kid holds characters used in path traversal or injection; a verifier must "
            "only look it up, never build a path or query from it"))
    if secret is not None:
        reason = weak_secret_reason(
            secret, alg=alg if isinstance(alg, str) and alg.startswith("HS") else "HS256",
            wordlist=wordlist,
        )
        if reason is not None:
            findings.append(Finding("weak_secret", "error",
                                    f"the HMAC secret is guessable: {reason}"))
    exp = claims.get("exp")
    if exp is None:
        findings.append(Finding("no_exp", "error", "the token has no exp: it never expires"))
    elif isinstance(exp, (int, float)) and not isinstance(exp, bool):
        start = claims.get("iat", claims.get("nbf"))
        if isinstance(start, (int, float)) and not isinstance(start, bool):
            lifetime = exp - start
            if lifetime > LONG_LIFETIME:
                findings.append(Finding(
                    "long_lifetime", "warning",
                    f"the token lives {int(lifetime)} s (over {LONG_LIFETIME} s); a stolen "
                    "access token stays useful that long"))
    for name, why in (("aud", "any service that trusts the issuer would accept it"),
                      ("iss", "nothing says who issued it"),
                      ("jti", "it cannot be revoked individually")):
        if name not in claims:
            findings.append(Finding(f"missing_{name}", "warning",
                                    f"the token has no {name} claim: {why}"))
    personal = _personal(claims)
    if personal:
        findings.append(Finding(
            "personal_data", "warning",
            f"claims {', '.join(sorted(personal))} look like personal data; a JWT is readable "
            "by every service and log that sees it"))
    if size > LARGE_TOKEN:
        findings.append(Finding(
            "large_token", "warning",
            f"the token is {size} bytes (over {LARGE_TOKEN}); it rides on every request"))
    return findings


def humanize(seconds: float) -> str:
    """A duration in its two largest units: "4 min 12 s", "3 h", "2 d 5 h"."""
    remaining = round(abs(seconds))
    parts: list[str] = []
    for name, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if remaining >= size:
            count, remaining = divmod(remaining, size)
            parts.append(f"{count} {name}")
        elif parts:
            break
        if len(parts) == 2:
            break
    return " ".join(parts) or "0 s"


def relative(claim: str, when: float, now: float) -> str:
    """A time claim as people say it: "expires in 4 min 12 s", "expired 3 h ago"."""
    delta = when - now
    span = humanize(delta)
    future = delta > 0
    if claim == "exp":
        return f"expires in {span}" if future else f"expired {span} ago"
    if claim == "nbf":
        return f"not valid for another {span}" if future else f"valid since {span} ago"
    if claim == "iat":
        return f"issued {span} in the future" if future else f"issued {span} ago"
    return f"in {span}" if future else f"{span} ago"
