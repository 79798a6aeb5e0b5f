"""Weak key material, refused at load: short or guessable HMAC secrets, weak RSA keys.

Each check is written once here and called wherever key material enters (a JWK, a PEM,
a secret, a fetched JWK Set, ``authstate inspect``'s lint): RSA needs 2048 bits
(NIST SP 800-131A) and an odd exponent of at least 3, and must not carry the ROCA
fingerprint (CVE-2017-15361); an HMAC secret must be as long as its hash and not be
guessable (RFC 7518 §3.2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from authstate.errors import WeakKeyError
from authstate.jose.algorithms import ALGORITHMS

RSA_MIN_BITS = 2048  # NIST SP 800-131A; the minimum
SSH_PREFIXES = (b"ssh-", b"ecdsa-sha2-")  # OpenSSH public keys


# --- weak secrets -------------------------------------------------------------------

COMMON_SECRETS = frozenset(
    {
        "secret", "password", "changeme", "change_me", "change-me", "your-256-bit-secret",
        "your-384-bit-secret", "your-512-bit-secret", "secretkey", "secret_key", "secret-key",
        "jwt_secret", "jwt-secret", "jwtsecret", "mysecret", "my_secret", "supersecret",
        "super_secret", "topsecret", "s3cr3t", "default", "admin", "test", "testing",
        "qwerty", "letmein", "123456", "12345678", "1234567890", "key", "private", "token",
        "hmac", "shhhhh", "not-so-secret", "development", "example", "xxxxxxxx",
    }
)
_TELL_WORDS = (
    "secret", "password", "passwd", "changeme", "change_me", "change-me", "example",
    "default", "qwerty", "letmein", "private",
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
_LOWER = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _LOWER | _UPPER
_BASE64 = _ALNUM | frozenset(b"+/-_=")
_PRINTABLE = frozenset(range(0x20, 0x7F))


def estimated_entropy_bits(secret: bytes) -> float:
    """An upper estimate of a secret's entropy from the alphabet it draws on.

    A hex string carries 4 bits a character however long it is; random bytes carry 8.
    This cannot see that a random-looking string was published somewhere, only that a
    secret is too short for its alphabet, which is the common mistake.
    """
    symbols = set(secret)
    if symbols <= _HEX and len(secret) % 2 == 0:
        decoded = bytes.fromhex(secret.decode("ascii"))
        if decoded and set(decoded) <= _PRINTABLE:
            return estimated_entropy_bits(decoded)  # text written as hex is still text
    for alphabet, size in (
        (_DIGITS, 10), (_HEX, 16), (_LOWER, 26), (_UPPER, 26), (_ALNUM, 62),
        (_BASE64, 64), (_PRINTABLE, 95),
    ):
        if symbols <= alphabet:
            return len(secret) * math.log2(size)
    return len(secret) * 8.0


def weak_secret_reason(
    secret: bytes | str, *, alg: str = "HS256", wordlist: Iterable[str] = ()
) -> str | None:
    """Why ``secret`` is not fit to sign ``alg`` tokens, or None when it is.

    ``wordlist`` adds known-published secrets (e.g. a cracking list) to the built-in
    short list, for ``authstate inspect``'s lint.
    """
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    spec = ALGORITHMS.get(alg)
    minimum = spec.size if spec is not None and spec.kty == "oct" else 32
    text = raw.decode("utf-8", "replace").strip().lower()
    if not raw:
        return "the secret is empty"
    if text in COMMON_SECRETS or text in {w.strip().lower() for w in wordlist if w.strip()}:
        return "the secret is on a list of commonly used secrets"
    if looks_like_public_key(raw):
        return "the secret is a PEM or SSH key: a public key used as an HMAC secret is forgeable"
    for word in _TELL_WORDS:
        if word in text:
            return f"the secret contains the word {word!r}; use random bytes"
    if len(raw) < minimum:
        return (
            f"{alg} needs a secret of at least {minimum} random bytes; this one has {len(raw)}"
        )
    if len(set(raw)) < min(len(raw), 16) // 2 + 1:
        return "the secret repeats too few distinct characters to be random"
    bits = estimated_entropy_bits(raw)
    if bits < 8 * minimum:
        return (
            f"the secret carries at most about {int(bits)} bits of entropy; {alg} needs "
            f"{8 * minimum} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe("
            f"{minimum}))'`)"
        )
    return None


def looks_like_public_key(raw: bytes) -> bool:
    """Whether an "HMAC secret" is in fact a PEM or SSH key: the key-confusion attack
    (a verifier's public key used as a shared secret), refused even with ``allow_weak``."""
    return b"-----BEGIN" in raw or raw.startswith(SSH_PREFIXES)


# --- RSA key quality -----------------------------------------------------------------

_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83,
    89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)


def _roca_subgroups() -> tuple[tuple[int, frozenset[int]], ...]:
    groups = []
    for p in _ROCA_PRIMES:
        members, x = set(), 1
        while True:
            members.add(x)
            x = (x * 65537) % p
            if x == 1:
                break
        groups.append((p, frozenset(members)))
    return tuple(groups)


_ROCA = _roca_subgroups()


def has_roca_fingerprint(n: int) -> bool:
    """True when ``n`` has the structure of an Infineon RSALib key (CVE-2017-15361).

    Such moduli are products of primes of the form k*M + (65537^a mod M), so ``n`` mod
    each small prime of M lies in the subgroup 65537 generates (Nemec et al., CCS 2017);
    a random modulus passes all these tests with negligible probability.
    """
    return all(n % p in members for p, members in _ROCA)


def check_rsa_numbers(n: int, e: int) -> None:
    """Refuse a weak RSA public key (``WeakKeyError`` says why): too short, a bad
    exponent, or the ROCA fingerprint. Called on JWK members before loading (so a weak
    key is reported as weak, not as whatever the loader trips on) and on loaded keys."""
    if n.bit_length() < RSA_MIN_BITS:
        raise WeakKeyError(
            f"RSA keys need at least {RSA_MIN_BITS} bits; this one has {n.bit_length()}"
        )
    if e < 3 or e % 2 == 0:
        raise WeakKeyError("RSA public exponent must be odd and at least 3")
    if has_roca_fingerprint(n):
        raise WeakKeyError("RSA key has the ROCA fingerprint (CVE-2017-15361); replace it")
