"""OAuth clients: the apps that send users to ``/oauth/authorize``, exchange codes and
refresh tokens, and the resource servers that introspect and revoke.

A *confidential* client has a public ID and a random 256-bit secret shown once, at
creation or rotation; the store keeps only the secret's SHA-256 (a slow hash adds nothing
for a secret with 256 bits of entropy). The check is constant-time and does the same work
for an unknown client ID. A *public* client (a SPA, a mobile app) has no secret and must
use PKCE. ``first_party`` clients are the operator's own apps: their users are not asked
to consent.

Redirect URIs are registered exactly and compared exactly (RFC 9700 §2.1: no wildcards,
no prefix match, so no open redirect): ``https`` URIs, or ``http`` on a loopback host
for development and native apps (RFC 8252 §7.3), never with a fragment (RFC 6749 §3.1.2).

Records written before these fields existed stay readable: a record without them is a
confidential client with no grant types, allowed to introspect and revoke as before.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from authstate.clock import Clock
from authstate.errors import InvalidInput
from authstate.oauth.scopes import check_names
from authstate.stores.base import JSON, Store

KIND = "client"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
ID_PATTERN = re.compile(r"^c_[A-Za-z0-9_-]{16}$")
GRANT_TYPES = ("authorization_code", "refresh_token", "password")
DEFAULT_GRANTS = ("authorization_code", "refresh_token")  # when redirect URIs are given
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
URI_MAX = 2000
_DUMMY_DIGEST = hashlib.sha256(b"no such client").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def check_redirect_uri(uri: str) -> str:
    """``uri`` if it may be registered as a redirect (or logout) URI, else
    ``InvalidInput`` saying why (see the module docstring)."""
    if (not isinstance(uri, str) or not uri or len(uri) > URI_MAX
            or any(c.isspace() or ord(c) < 0x20 or c in "*\\" for c in uri)):
        raise InvalidInput("a redirect URI is an absolute URL without spaces or wildcards")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise InvalidInput("not a valid URL") from None
    if "#" in uri:
        raise InvalidInput("a redirect URI must not have a fragment (RFC 6749 §3.1.2)")
    if not host or "@" in parts.netloc:
        raise InvalidInput("a redirect URI needs a host and no user name")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and host in LOOPBACK:
        return uri
    raise InvalidInput("a redirect URI must be https, or http on 127.0.0.1, [::1] or "
                       "localhost")


@dataclass(frozen=True, slots=True)
class Client:
    """A registered client as the rest of authstate sees it (never its secret)."""

    id: str
    name: str
    created_at: float
    public: bool = False
    redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    first_party: bool = False
    backchannel_logout_uri: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()  # RP-initiated logout, exact match

    @classmethod
    def from_value(cls, client_id: str, value: JSON) -> Client:
        return cls(
            id=client_id, name=value["name"], created_at=value["created_at"],
            public=bool(value.get("public", False)),
            redirect_uris=tuple(value.get("redirect_uris") or ()),
            scopes=tuple(value.get("scopes") or ()),
            grant_types=tuple(value.get("grant_types") or ()),
            first_party=bool(value.get("first_party", False)),
            backchannel_logout_uri=value.get("backchannel_logout_uri"),
            post_logout_redirect_uris=tuple(value.get("post_logout_redirect_uris") or ()),
        )

    def allows(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def public_view(self) -> JSON:
        """What ``clients list`` shows."""
        return {
            "client_id": self.id, "name": self.name, "public": self.public,
            "first_party": self.first_party, "redirect_uris": list(self.redirect_uris),
            "scopes": list(self.scopes), "grant_types": list(self.grant_types),
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
        }


class Clients:
    def __init__(self, store: Store, *, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create(
        self,
        name: str,
        *,
        redirect_uris: Iterable[str] = (),
        public: bool = False,
        scopes: Iterable[str] = (),
        grant_types: Iterable[str] | None = None,
        first_party: bool = False,
        backchannel_logout_uri: str | None = None,
        post_logout_redirect_uris: Iterable[str] = (),
    ) -> tuple[Client, str | None]:
        """A new client and its secret (the only time the secret exists in plain; None
        for a public client). Without ``grant_types``: the code flow and refresh when
        redirect URIs are given, else none (a resource server that introspects)."""
        if not NAME_PATTERN.match(name):
            raise InvalidInput(
                "a client name is 1-64 letters, digits, spaces, dots, dashes or underscores"
            )
        uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
        grants = tuple(dict.fromkeys(
            grant_types if grant_types is not None else (DEFAULT_GRANTS if uris else ())
        ))
        unknown = [g for g in grants if g not in GRANT_TYPES]
        if unknown:
            raise InvalidInput(f"unknown grant type {unknown[0]!r}; known: "
                               + ", ".join(GRANT_TYPES))
        if "authorization_code" in grants and not uris:
            raise InvalidInput("the authorization_code grant needs at least one redirect URI")
        if public and not grants:
            raise InvalidInput("a public client without grant types could do nothing")
        if backchannel_logout_uri is not None:
            check_redirect_uri(backchannel_logout_uri)
        logout_uris = tuple(dict.fromkeys(check_redirect_uri(u)
                                          for u in post_logout_redirect_uris))
        client_id = "c_" + secrets.token_urlsafe(12)
        secret = None if public else secrets.token_urlsafe(32)
        value: JSON = {
            "name": name, "created_at": self.clock.now(),
            "secret_sha256": _digest(secret) if secret is not None else None,
            "public": public, "redirect_uris": list(uris),
            "scopes": list(check_names(scopes)), "grant_types": list(grants),
            "first_party": first_party, "backchannel_logout_uri": backchannel_logout_uri,
            "post_logout_redirect_uris": list(logout_uris),
        }
        await self.store.put(KIND, client_id, value)
        return Client.from_value(client_id, value), secret

    async def get(self, client_id: object) -> Client | None:
        if not isinstance(client_id, str) or not ID_PATTERN.match(client_id):
            return None
        record = await self.store.get(KIND, client_id)
        return Client.from_value(client_id, record.value) if record is not None else None

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The confidential client when ``secret`` is its secret, else None."""
        record = None
        if ID_PATTERN.match(client_id):
            record = await self.store.get(KIND, client_id)
        expected = (record.value.get("secret_sha256") if record is not None else None) \
            or _DUMMY_DIGEST
        matches = hmac.compare_digest(_digest(secret), expected)
        if record is None or not matches or record.value.get("public"):
            return None
        return Client.from_value(client_id, record.value)

    async def remove(self, client_id: str) -> Client | None:
        if not ID_PATTERN.match(client_id):
            return None
        record = await self.store.delete(KIND, client_id)
        return Client.from_value(client_id, record.value) if record is not None else None

    async def rotate_secret(self, client_id: str) -> tuple[Client, str]:
        """A new secret for a confidential client; the old one stops working at once."""
        client = await self.get(client_id)
        if client is None:
            raise InvalidInput("no such client")
        if client.public:
            raise InvalidInput("a public client has no secret")
        secret = secrets.token_urlsafe(32)
        record = await self.store.patch(KIND, client_id, {"secret_sha256": _digest(secret)})
        if record is None:
            raise InvalidInput("no such client")
        return client, secret

    async def list(self, *, limit: int = 1000) -> list[Client]:
        records = await self.store.scan(KIND, limit=limit)
        clients = [Client.from_value(r.key, r.value) for r in records]
        return sorted(clients, key=lambda c: c.created_at)
