"""PKCE (RFC 7636), ``S256`` only: OAuth 2.1 §4.1.1 drops ``plain``, which protects
nothing once the authorization request leaks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

METHOD = "S256"
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, no padding


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_challenge(challenge: object) -> bool:
    return isinstance(challenge, str) and CHALLENGE.match(challenge) is not None


def matches(verifier: object, challenge: str) -> bool:
    """Whether ``verifier`` is well formed and hashes to ``challenge`` (constant-time)."""
    if not isinstance(verifier, str) or not VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
