"""Private signing keys encrypted at rest under a key-encryption key (KEK).

With ``AUTHSTATE_KEY_ENCRYPTION_KEY`` (or ``..._FILE``) set, the private half of every
signing key is stored sealed with AES-256-GCM (``cryptography``'s AEAD; no home-made
construction): a fresh 96-bit nonce per seal (NIST SP 800-38D §8.2.2), and the key's
``kid`` and ``alg`` as associated data, so a sealed blob moved onto another key's record
does not open. A copy of the store alone then yields no signing key.

The setting holds one or more KEKs, comma-separated, each 32 random bytes in base64url.
The first one seals; all of them open. That is how a KEK is rotated without stopping
anything: give every instance ``NEW,OLD``, run ``authstate keys rewrap`` (every stored
key re-sealed under ``NEW``), then drop ``OLD``. A sealed record names its KEK by a short
fingerprint (SHA-256 of the KEK, truncated), never by the KEK itself.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authstate.errors import ConfigurationError, MalformedToken, UnusableKey
from authstate.jose.jws import b64url_decode, b64url_text

KEK_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM nonce size NIST SP 800-38D recommends
SEALED_ALG = "A256GCM"


def _unb64(text: str) -> bytes:
    """base64url through authstate's one codec (``jose.jws``); trailing ``=`` padding is
    tolerated, as the KEK setting documents. ``MalformedToken`` or ``ValueError`` (not
    ASCII) when it is not base64url."""
    return b64url_decode(text.rstrip("=").encode("ascii"), "value")


def fingerprint(kek: bytes) -> str:
    """A short public name for a KEK (to find which one sealed a record)."""
    return b64url_text(hashlib.sha256(b"authstate-kek\0" + kek).digest()[:8])


class KeyWrap:
    """Seal and open private JWKs under the configured KEKs (the first one seals)."""

    __slots__ = ("_keks", "current")

    def __init__(self, keks: Sequence[bytes]) -> None:
        if not keks:
            raise ConfigurationError("a key-encryption key setting holds no key")
        for kek in keks:
            if len(kek) != KEK_BYTES:
                raise ConfigurationError(
                    f"a key-encryption key must be {KEK_BYTES} random bytes in base64url; "
                    f"one has {len(kek)}"
                )
        self._keks = {fingerprint(k): AESGCM(k) for k in keks}
        self.current = fingerprint(keks[0])

    def __repr__(self) -> str:
        return f"KeyWrap(current={self.current!r}, keys={len(self._keks)})"

    @classmethod
    def from_text(cls, text: str) -> KeyWrap:
        """KEKs from ``"NEW[,OLD...]"``, each base64url (padding optional)."""
        keks = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                keks.append(_unb64(part))
            except (MalformedToken, ValueError):
                raise ConfigurationError("a key-encryption key is not valid base64url") \
                    from None
        return cls(keks)

    @classmethod
    def from_settings(cls, value: str | None, file: Path | None) -> KeyWrap | None:
        """The wrap the settings ask for, or None (private keys stored as plain JWKs)."""
        if value is not None and file is not None:
            raise ConfigurationError("set key_encryption_key or key_encryption_key_file, "
                                     "not both")
        if file is not None:
            try:
                value = file.read_text()
            except OSError as error:
                raise ConfigurationError(
                    f"cannot read the key-encryption key file: {error.strerror}"
                ) from None
        return None if value is None else cls.from_text(value)

    def seal(self, jwk: Mapping[str, Any], *, aad: bytes) -> dict[str, str]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = json.dumps(dict(jwk), separators=(",", ":"), sort_keys=True).encode()
        sealed = self._keks[self.current].encrypt(nonce, plain, aad)
        return {"alg": SEALED_ALG, "kek": self.current, "iv": b64url_text(nonce),
                "ct": b64url_text(sealed)}

    def open(self, sealed: Mapping[str, Any], *, aad: bytes) -> dict[str, Any]:
        """The private JWK; ``UnusableKey`` when no configured KEK opens it."""
        aead = self._keks.get(str(sealed.get("kek")))
        if aead is None or sealed.get("alg") != SEALED_ALG:
            raise UnusableKey(
                f"a stored key is sealed under key-encryption key {str(sealed.get('kek'))!r}"
                ", which is not configured"
            )
        try:
            plain = aead.decrypt(_unb64(str(sealed["iv"])), _unb64(str(sealed["ct"])), aad)
        except (InvalidTag, KeyError, ValueError, MalformedToken):
            raise UnusableKey("a stored sealed key does not open (altered or moved)") from None
        jwk = json.loads(plain)
        if not isinstance(jwk, dict):
            raise UnusableKey("a stored sealed key does not hold a JWK")
        return jwk


def generate_kek() -> str:
    """A new KEK, as the setting takes it."""
    return b64url_text(secrets.token_bytes(KEK_BYTES))
