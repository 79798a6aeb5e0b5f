"""What ``authstate inspect`` knows about a token: its parts decoded with a precise
explanation of anything malformed, its times, its signature when keys are given, and the
lint findings. Shared by the CLI and the service's inspector page, so it lives in the
core rather than in either of them.

The verdict is one of three, and only one of them says yes (security invariant 9: an
unverified token is never reported valid):

- ``valid``: the signature was verified with a key and nothing is wrong with the claims;
- ``invalid``: something makes any verifier refuse it (a bad signature, expired, alg
  none, an HMAC secret guessed from a list, an issuer or audience other than expected),
  whether or not a key was given;
- ``unverified``: nothing wrong was found but the signature was not checked (no key was
  given, or the token is an encrypted JWE), so the claims are only what anyone could
  have written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from authstate.clock import NUMERIC_DATE_MAX
from authstate.errors import AuthstateError, InvalidToken
from authstate.guessable_secrets import GUESSABLE_SECRETS
from authstate.jose.jws import b64url_decode, verify_compact
from authstate.keystore import KeySet
from authstate.lint import Finding, lint, relative

INSPECT_MAX_BYTES = 64 * 1024  # inspect reads more than verify accepts, to explain why
TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
VALID, INVALID, UNVERIFIED = "valid", "invalid", "unverified"


def pasted_token(text: str) -> str:
    """A token as an operator pastes it: surrounding space and an optional ``Bearer ``
    prefix (copied with the header) dropped. One rule for the CLI and the page."""
    text = text.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text


# A guess costs one HMAC: a million HS256 guesses took 5.7 s on the 2-core CI machine.
GUESS_MAX_WORDS = 1_000_000
_HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
# Shown escaped: C0/C1 controls move the cursor or rewrite the terminal; format characters
# (bidi overrides U+202E, isolates U+2066, zero-width) make text read other than it is.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


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


def jwe_header(token: str) -> dict[str, Any] | None:
    """The protected header of a compact JWE (RFC 7516 §7.1: five parts), or None when
    ``token`` does not have five parts. Only the header is readable without the key."""
    if len(token) > INSPECT_MAX_BYTES or token.count(".") != 4:
        return None
    try:
        raw = explain_segment(token.split(".", 1)[0], "protected header")
    except Malformed as error:
        raise Malformed(f"the token has 5 parts (an encrypted JWE) but {error}") from None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise Malformed("the token has 5 parts (an encrypted JWE) but its protected header "
                        "is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed("the token has 5 parts (an encrypted JWE) but its protected header "
                        "is not a JSON object")
    return value


def escape_text(text: str) -> str:
    """``text`` with every control, format (bidi, zero-width) and unassigned character
    written as a JSON-style ``\\uXXXX`` escape, newlines kept: safe to print on a terminal,
    and inside a JSON document it still decodes to the same string."""
    out = []
    for char in text:
        if char != "\n" and unicodedata.category(char) in _HIDDEN:
            code = ord(char)
            if code > 0xFFFF:  # a surrogate pair, as JSON writes it
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def guess_secret(
    token: str, header: Mapping[str, Any], candidates: Iterable[bytes]
) -> bytes | None:
    """The candidate that signed this HS* ``token`` (already decoded: ``header``), if any:
    what an attacker with a cracking list finds offline. Compared in constant time; at
    most ``GUESS_MAX_WORDS`` candidates are tried."""
    alg = header.get("alg")
    digest = _HMAC_HASHES.get(alg) if isinstance(alg, str) else None
    if digest is None:
        return None
    signing_input, _, signature_segment = token.rpartition(".")
    signature = b64url_decode(signature_segment.encode("ascii"), "signature")
    message = signing_input.encode("ascii")
    for count, word in enumerate(candidates):
        if count >= GUESS_MAX_WORDS:
            break
        if hmac.compare_digest(hmac.new(word, message, digest).digest(), signature):
            return word
    return None


def _utc(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _verify(
    token: str, header: Mapping[str, Any], keys: KeySet, *, explicit: bool
) -> tuple[dict[str, Any], str | None, list[Finding]]:
    """Check the signature with ``keys``: the signature entry, the key's algorithm, and
    a finding when an ``explicit`` single key carries another kid than the token names.

    A key given on the command line is the key to check with, whatever its kid, so it is
    bound to the token's kid for the lookup; the report then names the key by its own kid
    and says once that the two differ (one verdict, no contradiction)."""
    findings: list[Finding] = []
    token_kid = header.get("kid")
    own_kid: str | None = None
    if explicit and len(keys) == 1 and isinstance(token_kid, str):
        only = next(iter(keys))
        if only.kid != token_kid:
            own_kid = only.kid
            keys = KeySet([replace(only, kid=token_kid)])
            if only.kid != "stdin":  # a bare secret has no kid of its own
                findings.append(Finding(
                    "kid_mismatch", "warning",
                    f"the given key's kid {only.kid!r} differs from the token's "
                    f"({token_kid!r}); it was checked with the given key, but a verifier "
                    "that looks keys up by kid would not pick this one"))
    try:
        verified = verify_compact(token, keys)
    except InvalidToken as error:
        kid = token_kid if isinstance(token_kid, str) else None
        candidate = keys.get(kid) if kid is not None else (
            next(iter(keys)) if len(keys) == 1 else None)
        return ({"status": "invalid", "code": error.code, "message": error.message},
                candidate.alg if candidate is not None else None, findings)
    kid_shown = own_kid if own_kid is not None else verified.key.kid
    return ({"status": "verified", "kid": kid_shown, "alg": verified.key.alg},
            verified.key.alg, findings)


def _expected_claims(
    claims: Mapping[str, Any], issuer: str | None, audience: str | None
) -> list[Finding]:
    """``--issuer`` and ``--audience`` (RFC 7519 §4.1.1, §4.1.3: ``aud`` is a string or
    a list of strings, one of which must be ours)."""
    findings: list[Finding] = []
    if issuer is not None and claims.get("iss") != issuer:
        got = claims.get("iss")
        findings.append(Finding(
            "issuer_mismatch", "error",
            f"the token's issuer is {got!r}, not the expected {issuer!r}" if got is not None
            else f"the token has no iss claim; expected {issuer!r}"))
    if audience is not None:
        aud = claims.get("aud")
        ours = aud == audience if isinstance(aud, str) else (
            isinstance(aud, list) and audience in aud)
        if not ours:
            findings.append(Finding(
                "audience_mismatch", "error",
                f"the token's audience {aud!r} does not include the expected {audience!r}"
                if aud is not None else f"the token has no aud claim; expected {audience!r}"))
    return findings


def jwe_report(header: dict[str, Any], size: int) -> dict[str, Any]:
    """What can be said of an encrypted JWE without its key: only its protected header."""
    alg, enc = header.get("alg"), header.get("enc")
    message = (f"an encrypted JWE (alg {alg!r}, enc {enc!r}): its content cannot be "
               "decrypted or verified here")
    return {
        "kind": "jwe",
        "verdict": UNVERIFIED,
        "valid": False,
        "signature_checked": False,
        "problems": [],
        "header": header,
        "signature": {"status": "unchecked", "message": message},
        "findings": [],
        "size": size,
    }


def report(
    token: str,
    *,
    keys: KeySet | None,
    secret: bytes | None,
    now: float,
    wordlist: list[str],
    guesses: Iterable[bytes] = (),
    issuer: str | None = None,
    audience: str | None = None,
    explicit_key: bool = False,
) -> dict[str, Any]:
    """Everything inspect knows about ``token``, as one JSON-ready dict.

    ``keys`` verify the signature (``explicit_key``: one key given by hand, used whatever
    its kid); without keys, an HS* token is tried against ``GUESSABLE_SECRETS`` and then
    ``guesses``. ``secret`` is the HMAC secret given, for the weak-secret lint against
    ``wordlist``."""
    header = jwe_header(token)
    if header is not None:
        return jwe_report(header, len(token))
    header, claims, _ = decode(token)
    signature: dict[str, Any] = {"status": "unchecked"}
    key_alg: str | None = None
    findings: list[Finding] = []
    if keys is not None:
        signature, key_alg, findings = _verify(token, header, keys, explicit=explicit_key)
    else:
        guessed = guess_secret(token, header, _candidates(guesses))
        if guessed is not None:
            key_alg = str(header["alg"])
            shown = escape_text(guessed.decode("utf-8", "backslashreplace"))
            signature = {"status": "cracked", "alg": key_alg, "secret": shown}
            findings.append(Finding(
                "weak_secret", "error",
                f"the token is signed with the guessable secret {shown!r}, found by trying "
                "a list of common secrets: anyone can forge tokens with it"))
    findings += lint(
        header, claims, size=len(token), key_alg=key_alg, secret=secret, wordlist=wordlist
    )
    findings += _expected_claims(claims, issuer, audience)
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
    checked = signature["status"] in ("verified", "invalid", "cracked")
    verdict = INVALID if problems else VALID if signature["status"] == "verified" else UNVERIFIED
    if verdict == UNVERIFIED:
        problems.append("the signature was not checked: give --key, --secret-stdin or --jwks")
    return {
        "kind": "jwt",
        "verdict": verdict,
        "valid": verdict == VALID,
        "signature_checked": checked,
        "problems": problems,
        "header": header,
        "claims": claims,
        "times": times,
        "signature": signature,
        "findings": [f.as_dict() for f in findings],
        "size": len(token),
        "evaluated_at": _utc(now),
    }


def _candidates(extra: Iterable[bytes]) -> Iterable[bytes]:
    for word in GUESSABLE_SECRETS:
        yield word.encode("utf-8")
    yield from extra
