"""The authentication models the bench compares, each built only from ``AuthState``'s
public functions and the web middleware's authenticators, so that what is measured is
what an application runs.

A model knows how to mint a credential for the bench user, how that credential travels
(a cookie or an ``Authorization`` header), how to authenticate it in process, how to
revoke it, and what the server keeps for it. The bench process and the HTTP server
process build the same models from the same ``ModelSpec`` list; a model whose pieces are
not installed or not configured is skipped with a reason instead of failing the run.

JWT models other than ``jwt+cache`` turn the verified-token cache off, so that they
measure what the issue asks for (a signature verify per request, as for a token seen
for the first time); ``jwt+cache`` shows the default, where a repeated token costs a
hash and a dictionary lookup.

The bench user is a real account (created on each store the first time a state opens
it), so the same models can measure a change of standing: ``set_scopes`` or
``disable_user`` through the front door, then the first refusal of a credential that
held the scope. ``jwt+push`` runs with token versions on, the setting that carries such a
change to JWTs (the other JWT variants do not, and are bounded by the token lifetime).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from authstate.config import Settings
from authstate.errors import AuthstateError, Conflict, InvalidToken, NotFound
from authstate.revocation import DENY
from authstate.sessions import KIND as SESSION_KIND
from authstate.sessions import digest as session_digest
from authstate.state import AuthState
from authstate.web.cookies import session_cookie_name
from authstate.web.middleware import (
    Authenticator,
    BearerJWT,
    BearerOpaque,
    Credentials,
    Introspection,
    SessionCookie,
)

Family = Literal[
    "session", "jwt", "jwt+cache", "jwt+denylist", "jwt+push", "opaque",
    "opaque+introspection",
]
RevocationKind = Literal["immediate", "push", "lifetime"]

BENCH_EMAIL = "bench-user@authstate-bench.example"
BENCH_CLIENT = "authstate-bench"

# Each family's settings: which revocation checks run on the per-request path.
NO_REVOCATION = {
    "revocation_denylist": False,
    "revocation_token_version": False,
    "revocation_session_bound": False,
    "push_revocation": False,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "session": {},
    "jwt": NO_REVOCATION,
    "jwt+cache": NO_REVOCATION,
    "jwt+denylist": {**NO_REVOCATION, "revocation_denylist": True},
    "jwt+push": {**NO_REVOCATION, "revocation_denylist": True,
                 "revocation_token_version": True, "push_revocation": True},
    "opaque": {},
    "opaque+introspection": {},
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Which model, on which store, with which algorithm; the same list in every process."""

    name: str
    family: Family
    store: str
    algorithm: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """Where the HTTP service answers RFC 7662 introspection, and the bench's client."""

    url: str
    client_id: str
    client_secret: str


class Model(Protocol):
    """What the runner and the server need from one model."""

    spec: ModelSpec
    state: AuthState
    user_id: str
    header_name: str
    revocation_kind: RevocationKind
    state_what: str

    async def issue(self) -> str:
        """A fresh credential for the bench user (the secret the client holds)."""

    def header_value(self, credential: str) -> str:
        """The credential as it travels in ``header_name``."""

    async def authenticate(self, credential: str) -> bool:
        """One in-process authentication: True when accepted."""

    def authenticator(self) -> Authenticator:
        """The web middleware's authenticator for this model, as a service mounts it."""

    async def revoke(self, credential: str) -> None:
        """Revoke the credential through the front door."""

    async def state_bytes(self, credential: str) -> tuple[int, int | None]:
        """Bytes the server keeps per signed-in user, and per revoked credential."""


def record_bytes(key: str, value: object) -> int:
    """A store-neutral size for one record: its key plus its compact JSON value, the
    bytes every backend must hold at least (engines add their own overhead on top)."""
    return len(key.encode()) + len(json.dumps(value, separators=(",", ":")).encode())


class SessionModel:
    """A server-side session: the cookie holds a random ID, every request is a store read."""

    header_name = "cookie"
    revocation_kind: RevocationKind = "immediate"
    state_what = "session record (key + JSON value)"

    def __init__(self, spec: ModelSpec, state: AuthState, user_id: str) -> None:
        self.spec = spec
        self.state = state
        self.user_id = user_id
        self.cookie_name = session_cookie_name(state.settings)

    async def issue(self) -> str:
        session_id, _ = await self.state.sessions.create(
            self.user_id, ip="127.0.0.1", user_agent="authstate-bench"
        )
        return session_id

    def header_value(self, credential: str) -> str:
        return f"{self.cookie_name}={credential}"

    async def authenticate(self, credential: str) -> bool:
        return await self.state.authenticate_session(credential) is not None

    def authenticator(self) -> Authenticator:
        return SessionCookie(self.state)

    async def revoke(self, credential: str) -> None:
        await self.state.sessions.revoke(credential, reason="bench")

    async def state_bytes(self, credential: str) -> tuple[int, int | None]:
        key = session_digest(credential)
        record = await self.state.store.get(SESSION_KIND, key)
        return (0 if record is None else record_bytes(key, record.value)), 0


class BearerModel:
    """A Bearer token authenticated through ``AuthState.authenticate_bearer``: a JWT
    (verify, then the revocation check its settings enable) or an opaque token (a store
    read)."""

    header_name = "authorization"

    def __init__(self, spec: ModelSpec, state: AuthState, user_id: str) -> None:
        self.spec = spec
        self.state = state
        self.user_id = user_id
        family = spec.family
        self.opaque = family.startswith("opaque")
        self.revocation_kind: RevocationKind = (
            "lifetime" if family in ("jwt", "jwt+cache")
            else "push" if family == "jwt+push" else "immediate"
        )
        self.state_what = {
            "jwt": "nothing per user (the key set is shared)",
            "jwt+cache": "nothing in the store; the verified-token cache holds claims in memory",
            "jwt+denylist": "nothing per user; a denylist record per revoked token",
            "jwt+push": "nothing per user; a denylist record per revoked token, in the store "
            "and in every verifier's memory",
            "opaque": "opaque token record (key + JSON value)",
            "opaque+introspection": "opaque token record at the service (key + JSON value)",
        }[family]
        if family not in ("jwt+cache",) and not self.opaque:
            state.tokens.cache = None

    async def issue(self) -> str:
        if self.opaque:
            token, _ = await self.state.opaque.issue(self.user_id)
            return token
        token, _ = self.state.tokens.issue(self.user_id)
        return token

    def header_value(self, credential: str) -> str:
        return f"Bearer {credential}"

    async def authenticate(self, credential: str) -> bool:
        try:
            await self.state.authenticate_bearer(credential)
        except InvalidToken:
            return False
        return True

    def authenticator(self) -> Authenticator:
        return BearerOpaque(self.state) if self.opaque else BearerJWT(self.state)

    async def revoke(self, credential: str) -> None:
        await self.state.revoke_token(credential)

    async def state_bytes(self, credential: str) -> tuple[int, int | None]:
        if self.opaque:
            from authstate.tokens.opaque import KIND as OPAQUE_KIND
            from authstate.tokens.opaque import digest as opaque_digest

            key = opaque_digest(credential)
            record = await self.state.store.get(OPAQUE_KIND, key)
            return (0 if record is None else record_bytes(key, record.value)), 0
        if self.spec.family in ("jwt", "jwt+cache"):
            return 0, None
        spare = await self.issue()
        await self.revoke(spare)
        denied = await self.state.store.scan(DENY, limit=1)
        return 0, (record_bytes(denied[0].key, denied[0].value) if denied else None)


class IntrospectionModel:
    """An opaque token that a resource server checks by asking the authstate service's
    RFC 7662 endpoint over HTTP, with the middleware's ``Introspection`` authenticator."""

    header_name = "authorization"
    revocation_kind: RevocationKind = "immediate"
    state_what = "opaque token record at the service (key + JSON value)"

    def __init__(
        self, spec: ModelSpec, state: AuthState, user_id: str, service: ServiceInfo
    ) -> None:
        self.spec = spec
        self.state = state
        self.user_id = user_id
        self.service = service
        self._opaque = BearerModel(ModelSpec(spec.name, "opaque", spec.store), state, user_id)
        self._introspection = Introspection(
            service.url, client_id=service.client_id, client_secret=service.client_secret,
        )

    async def issue(self) -> str:
        return await self._opaque.issue()

    def header_value(self, credential: str) -> str:
        return f"Bearer {credential}"

    async def authenticate(self, credential: str) -> bool:
        headers = [(b"authorization", f"Bearer {credential}".encode())]
        try:
            found = await self._introspection.authenticate(
                Credentials({"type": "http", "method": "GET", "headers": headers})
            )
        except InvalidToken:
            return False
        return found is not None

    def authenticator(self) -> Authenticator:
        return self._introspection

    async def revoke(self, credential: str) -> None:
        await self.state.revoke_token(credential)

    async def state_bytes(self, credential: str) -> tuple[int, int | None]:
        """Measured on a token of the same shape issued here: ``credential`` lives at the
        service, whose store this process may not see."""
        return await self._opaque.state_bytes(await self._opaque.issue())

    async def close(self) -> None:
        await self._introspection.aclose()


async def bench_account(state: AuthState) -> str:
    """The bench user's account on this state's store, created when absent (a store
    shared by several states, or with the HTTP server process, holds one). Its password
    is random and never used: the bench mints credentials for it directly."""
    try:
        return (await state.find_user(BENCH_EMAIL)).id
    except NotFound:
        pass
    try:
        user = await state.add_user(BENCH_EMAIL, secrets.token_urlsafe(24), via="bench")
    except Conflict:  # another process created it meanwhile
        return (await state.find_user(BENCH_EMAIL)).id
    return user.id


class Unavailable(Exception):
    """A model cannot run here (a piece not installed or not configured); the runner
    records the reason and carries on with the others. Never leaves the bench."""


class Workshop:
    """The ``AuthState``s the models run on, one per store URL and settings variant,
    opened on first use. The bench process and the HTTP server each hold one.

    Every state on a shared store signs with ``algorithm`` (the key set lives in the
    store, so the first state to open it decides); the per-algorithm JWT models run on
    their own memory store."""

    def __init__(self, settings: Settings, *, namespace: str, algorithm: str) -> None:
        self.settings = settings
        self.namespace = namespace
        self.algorithm = algorithm
        self.service: ServiceInfo | None = None
        self._states: dict[tuple[str, str], AuthState] = {}
        self._users: dict[int, str] = {}
        self._models: list[Model] = []

    async def state(self, url: str, variant: str, algorithm: str | None = None) -> AuthState:
        slot = (url, f"{variant}/{algorithm}")
        if slot not in self._states:
            settings = self.settings.replace(
                store=url,
                namespace=self.namespace,
                key_algorithm=algorithm or self.algorithm,
                **VARIANTS[variant],
            )
            state = await AuthState.open(settings)
            self._states[slot] = state
            self._users[id(state)] = await bench_account(state)
        return self._states[slot]

    def user_id(self, state: AuthState) -> str:
        """The bench account's ID on this state's store."""
        return self._users[id(state)]

    async def build(self, spec: ModelSpec) -> Model:
        own_keys = spec.family in ("jwt", "jwt+cache")
        try:
            state = await self.state(
                spec.store, spec.family, spec.algorithm if own_keys else None
            )
        except (ImportError, AuthstateError) as error:
            raise Unavailable(f"store {spec.store.split('://')[0]}: {error}") from error
        model: Model
        user_id = self.user_id(state)
        if spec.family == "session":
            model = SessionModel(spec, state, user_id)
        elif spec.family == "opaque+introspection":
            if self.service is None:
                raise Unavailable("needs the HTTP service (not run with --no-http)")
            model = IntrospectionModel(spec, state, user_id, self.service)
        else:
            model = BearerModel(spec, state, user_id)
        self._models.append(model)
        return model

    async def close(self, *, drop: bool = False) -> None:
        for model in self._models:
            if isinstance(model, IntrospectionModel):
                await model.close()
        dropped: set[str] = set()
        for (url, _), state in self._states.items():
            drop_namespace = getattr(state.store, "drop_namespace", None)
            if drop and drop_namespace is not None and url not in dropped:
                dropped.add(url)
                await drop_namespace()
            await state.close()
        self._states.clear()
