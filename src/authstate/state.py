"""The front door: one object composes the store, sessions, keys, tokens and revocation,
and owns every flow a user or an operator triggers.

``web``, ``cli`` and ``bench`` each hold one ``AuthState`` and call it, rather than each
wiring the core modules together on its own. Build it from ``Settings`` with
``await AuthState.open(settings)`` (or ``async with``), or hand it an already open store.

The flows (``login``, ``password_grant``, ``logout``, ``change_password``, ``end_sessions``,
``revoke_user``, ``add_user``, ``add_client``, ``authorize``, ``exchange_code``,
``rotate_keys`` ...) are methods here, each
doing its whole job: the throttle, the checks, the store writes and the audit trail. The
HTTP routes, the pages, the CLI and any future adapter only translate their inputs to one
of these calls and its result (or error) back, so two front ends cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

from authstate import csrf, keystore
from authstate.audit import PERSONAL_FIELDS, AuditLog
from authstate.bus import Bus, bus_for
from authstate.cleanup import BATCH, CleanupReport, Sweeper, cleanup_once
from authstate.clients import Client, Clients
from authstate.clock import Clock, SystemClock
from authstate.config import Settings
from authstate.errors import (
    AccountDisabled,
    AuthenticationFailed,
    AuthstateError,
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidInput,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    MalformedToken,
    NotFound,
    Refused,
    SessionNotFound,
    StoreUnavailable,
    TokenRevoked,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from authstate.identity import Identity
from authstate.keystore import KeySet
from authstate.keywrap import KeyWrap
from authstate.metrics import Metrics, timed_verify
from authstate.oauth import oidc, scopes
from authstate.oauth.authorization import AuthorizationRequest
from authstate.oauth.backchannel import BackchannelLogout
from authstate.oauth.codes import AuthorizationCodes, CodeGrant
from authstate.outage import OutageLog
from authstate.passwords import PasswordHasher
from authstate.revocation import VERSION, Policies, Revocations
from authstate.sessions import HANDLE_LEN, Session, SessionCache, SessionManager, fingerprint
from authstate.stores import Store, open_store
from authstate.stores.base import JSON
from authstate.throttle import LoginThrottle
from authstate.tokens import introspection
from authstate.tokens.access import AccessTokens, VerifiedTokenCache
from authstate.tokens.opaque import OpaqueTokens
from authstate.tokens.opaque import looks_like as looks_opaque
from authstate.tokens.refresh import (
    ANY_CLIENT,
    AnyClient,
    ClientCheck,
    Grant,
    RefreshTokens,
    TokenPair,
)
from authstate.usercache import UserCache
from authstate.users import User, Users

HEX = frozenset("0123456789abcdef")
IDENTITY_MEMO = 10_000  # entries of authenticate_session_cached's memo


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login: the session's secret ID (for the cookie, given out once), the
    session, and its CSRF token."""

    user: User
    session_id: str
    session: Session
    csrf_token: str


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    """A changed password. ``session_id`` is the caller's session's new ID (it was
    rotated: a privilege change) or None when no session made the change."""

    user: User
    session_id: str | None = None
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class UserRevoked:
    """What ``revoke_user`` ended: sessions and refresh token families."""

    sessions: int
    families: int


@dataclass(frozen=True, slots=True)
class UserDisabled:
    """A disabled account, and what disabling it ended."""

    user: User
    revoked: UserRevoked


logger = logging.getLogger("authstate.state")


def _session_identity(session: Session, user: User | None) -> Identity | None:
    """A logged-in session's identity with the account as it is now (None: disabled)."""
    if user is not None and user.disabled:
        return None
    return Identity(
        user_id=session.user_id,
        method="session",
        expires_at=session.expires_at,
        sid=session.sid,
        scope=user.scopes if user is not None else (),
        session=session,
        user=user,
    )


def _jwt_identity(claims: dict[str, Any]) -> Identity:
    scope = claims.get("scope")
    return Identity(
        user_id=claims["sub"], method="jwt", expires_at=float(claims["exp"]),
        sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
        scope=tuple(scope.split()) if isinstance(scope, str) else (), claims=claims,
    )

NO_PERSISTENCE_WARNING = (
    "the Redis store keeps nothing on disk (CONFIG save is empty and appendonly is no): "
    "a Redis restart loses every user, session and signing key; enable RDB or AOF "
    "persistence for anything but a throwaway setup"
)


class AuthState:
    """The front door of authstate: one per process, holding the store, the key set, the
    revocation state and the bus, and owning every flow (see the module docstring).

    Why one object: sessions, tokens and revocation are one system (ending a session
    revokes its refresh families, opaque tokens and bound access tokens; a user's token
    version ends every JWT), and that wiring must be done once, in one place, for every
    front end. Why the flows live here: a rule written in a route would be missed by the
    pages, the CLI or a sync adapter calling the same thing another way.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.metrics = Metrics() if settings.service.metrics else None
        self.audit = AuditLog(
            store, self.clock, metrics=self.metrics,
            retention_days=settings.service.audit_retention_days,
        )
        self.passwords = PasswordHasher(
            time_cost=settings.passwords.time_cost,
            memory_kib=settings.passwords.memory_kib,
            parallelism=settings.passwords.parallelism,
        )
        self.users = Users(store, clock=self.clock, hasher=self.passwords)
        self.clients = Clients(store, clock=self.clock)
        self.codes = AuthorizationCodes(store, clock=self.clock)
        self.throttle = LoginThrottle(
            store,
            clock=self.clock,
            account_limit=settings.throttle.account_limit,
            ip_limit=settings.throttle.ip_limit,
            window=settings.throttle.window,
        )
        self._init_tokens(settings, store, bus)
        self.sessions = SessionManager(
            store,
            clock=self.clock,
            idle_timeout=settings.sessions.idle_timeout,
            absolute_timeout=settings.sessions.absolute_timeout,
            touch_interval=settings.sessions.touch_interval,
            on_revoke=self._session_ended,
            on_store_error=self.metrics.store_error_hook("session") if self.metrics else None,
            cache=SessionCache(self.revocation, clock=self.clock,
                               ttl=settings.sessions.cache_seconds),
        )
        self.backchannel = BackchannelLogout(
            store, self.keys, self.audit, clock=self.clock, issuer=settings.tokens.issuer,
            client=self.clients.get, interval=float(settings.service.cleanup_interval),
        )

    def _init_tokens(self, settings: Settings, store: Store, bus: Bus | None) -> None:
        """Keys, access tokens, refresh tokens, opaque tokens and revocation. The key set
        starts empty and is filled from the store by ``start``."""
        tokens, revocation = settings.tokens, settings.revocation
        kek = tokens.key_encryption_key
        self.keys = KeySet(
            max_token_ttl=tokens.access_ttl, leeway=tokens.leeway, clock=self.clock,
            wrap=KeyWrap.from_settings(None if kek is None else kek.get_secret_value(),
                                       tokens.key_encryption_key_file),
        )
        self.key_watcher = keystore.KeyWatcher(
            store, self.keys, clock=self.clock, algorithm=tokens.key_algorithm,
            audit=self.audit,
        )
        self._key_poll: asyncio.Task[None] | None = None
        # One verified-token cache: the access tokens fill it (after checking the local
        # revocation copy), the revocation copy evicts from it.
        verified = VerifiedTokenCache()
        self.bus = bus if bus is not None else bus_for(settings, store.url_scheme)
        self.revocation = Revocations(
            store, clock=self.clock, bus=self.bus, fallback=revocation.bus_fallback,
            policies=Policies(
                denylist=revocation.denylist,
                token_version=revocation.token_version,
                session_bound=revocation.session_bound,
            ),
            lifetime=tokens.access_ttl + tokens.leeway, leeway=tokens.leeway,
            cache=verified, sync_keys=self.key_watcher.sync,
            on_lag=self.metrics.observe_bus_lag if self.metrics is not None else None,
        )
        self.tokens = AccessTokens(
            self.keys, issuer=tokens.issuer, audience=tokens.audience, clock=self.clock,
            ttl=tokens.access_ttl, allow_long_lifetime=tokens.allow_long_lifetime,
            leeway=tokens.leeway, cache=verified, revocation=self.revocation,
        )
        self.refresh = RefreshTokens(
            store, mint=self._mint, clock=self.clock, ttl=settings.refresh.ttl,
            family_ttl=settings.refresh.family_ttl, grace=settings.refresh.grace,
            reuse_window=settings.refresh.reuse_window,
            audit=self.audit, on_reuse=self._refresh_reused, authorize=self._authorize_grant,
        )
        self.opaque = OpaqueTokens(store, clock=self.clock, ttl=settings.tokens.access_ttl)
        self.user_cache = UserCache(self.users, self.revocation, clock=self.clock,
                                    ttl=revocation.user_cache_seconds)
        # authenticate_session_cached's Identity per cached session (see there)
        self._identities: dict[int, tuple[Session, User | None, Identity]] = {}
        self._started = False

    @timed_verify("session")
    async def authenticate_session(self, session_id: object) -> Identity | None:
        """The identity behind a session cookie, or None (unknown, expired, revoked and
        malformed are one answer). ``StoreUnavailable`` when the store cannot answer:
        an outage is not a logout, so the caller fails closed without ending anything."""
        session = await self.sessions.lookup(session_id)
        if session is None or session.anonymous:  # a visitor's session logs no one in
            return None
        # The account as it is now, not a copy taken at login: a disabled user's session
        # is refused, and the identity carries the scopes the user holds at this request.
        # ``UserCache`` spares the read while push revocation is live (a change's event
        # drops the copy everywhere); otherwise it is read here. A user ID with no account
        # here is the application's own (no read: the ID is not ours), with no scopes.
        user = await self.user_cache.get(session.user_id)
        return _session_identity(session, user)

    def authenticate_session_cached(self, session_id: object) -> Identity | None:
        """``authenticate_session``'s answer when this process's copies (``SessionCache``,
        ``UserCache``) can give it without awaiting, from any thread; None means "await
        ``authenticate_session``", never "no session". The sync face's fast path."""
        start = time.perf_counter()
        session = self.sessions.lookup_cached(session_id)
        if session is None or session.anonymous:
            return None
        user_cache = self.user_cache
        if not user_cache.usable:
            return None
        entry = user_cache.peek(session.user_id)
        if entry is None:
            return None
        user = entry[1]
        # one Identity per (cached session, cached user) pair: both are immutable and
        # replaced, never changed, when the store changes, so it is rebuilt exactly then
        memo = self._identities.get(id(session))
        if memo is not None and memo[0] is session and memo[1] is user:
            identity: Identity | None = memo[2]
        else:
            identity = _session_identity(session, user)
            if identity is not None:
                if len(self._identities) >= IDENTITY_MEMO:
                    self._identities.clear()
                self._identities[id(session)] = (session, user, identity)
        if identity is not None and self.metrics is not None:
            self.metrics.observe_verify("session", time.perf_counter() - start)
        return identity

    async def current_user(self, user_id: str) -> User | None:
        """The account as it is now, for a request (cached per ``UserCache``'s rules)."""
        return await self.user_cache.get(user_id)

    # -- flows: logging in and out ---------------------------------------------------

    async def login(
        self,
        email: str,
        password: str,
        *,
        ip: str | None,
        user_agent: str | None,
        previous_session_id: str | None = None,
        via: str = "session",
    ) -> LoginResult:
        """Log in with email and password: a new session with a fresh CSRF token.

        The order matters: the attempt takes its throttle slots (per account, per client
        IP) before any password work, so a throttled attempt costs the service nothing
        and learns nothing, and a burst of parallel guesses cannot outrun the count (see
        ``throttle``). A failure keeps its slots; a success gives back only its own, and
        always creates a session with a fresh ID (no session fixation: an ID the client
        held before, ``previous_session_id``, is revoked, never upgraded) and a fresh CSRF
        token in its data. Every step is audited, with no password and no session ID.
        ``via`` names the front end in the failure's audit detail.

        The previous session's data (a visitor's cart, a flash message) carries over to
        the new session when that session was anonymous or already this user's, never
        from another user's; its CSRF token never does (the new one is fresh). A write
        to the previous session that lands between this copy and its revocation is lost:
        the old ID is dead either way.

        Raises ``Throttled``, ``AuthenticationFailed`` or ``StoreUnavailable``."""
        user = await self._check_credentials(
            email, password, ip=ip, user_agent=user_agent, via=via
        )
        token = csrf.new_token()
        kept = await self._data_to_keep(previous_session_id, user.id)
        session_id, session = await self.sessions.create(
            user.id, ip=ip, user_agent=user_agent, data={**kept, csrf.DATA_KEY: token}
        )
        await self._still_enabled(user.id, session, ip=ip, user_agent=user_agent, via=via)
        actor = f"user:{user.id}"
        await self.audit.record(
            "session_created", actor=actor, user_id=user.id, session=session.handle,
            ip=ip, user_agent=user_agent,
        )
        if previous_session_id is not None:
            previous = await self.sessions.revoke(previous_session_id, reason="login")
            if previous is not None:
                await self.audit.record(
                    "session_rotated", actor=actor, user_id=user.id,
                    session=session.handle, ip=ip, user_agent=user_agent,
                    detail={"previous": previous.handle, "reason": "login"},
                )
        await self.audit.record(
            "login_succeeded", actor=actor, user_id=user.id, session=session.handle,
            ip=ip, user_agent=user_agent,
        )
        return LoginResult(user, session_id, session, token)

    async def _data_to_keep(self, previous_session_id: str | None, user_id: str) -> JSON:
        """What a login carries over from the client's previous session (see ``login``)."""
        if previous_session_id is None:
            return {}
        previous = await self.sessions.lookup(previous_session_id)
        if previous is None or not (previous.anonymous or previous.user_id == user_id):
            return {}
        return {k: v for k, v in previous.data.items() if k != csrf.DATA_KEY}

    async def password_grant(
        self,
        email: str,
        password: str,
        *,
        ip: str | None,
        user_agent: str | None,
        scope: str | None = None,
        client: Client | None = None,
    ) -> TokenPair:
        """RFC 6749 §4.3, legacy (RFC 9700 §2.4: MUST NOT be used; kept for existing
        callers, off with ``password_grant=false``): the same credential check, throttle
        and audit as ``login``, then a session (for the token's ``sid``; no cookie, so no
        CSRF token) and the first access and refresh tokens of a new family bound to it.
        Without a client, or for a client allowed the ``password`` grant; ``scope`` must
        be within the user's and the client's (``InvalidScope``), checked before any
        session exists."""
        if not self.settings.tokens.password_grant:
            raise UnsupportedGrantType("the password grant is switched off here")
        if client is not None and not client.allows("password"):
            raise UnauthorizedClient("this client may not use the password grant")
        requested = scopes.parse(scope)
        if client is not None:
            scopes.within(requested, client.scopes, "client")
        via = "password_grant"
        user = await self._check_credentials(
            email, password, ip=ip, user_agent=user_agent, via=via
        )
        scopes.within(requested, user.scopes, "user")
        _, session = await self.sessions.create(user.id, ip=ip, user_agent=user_agent)
        actor = f"user:{user.id}"
        await self.audit.record(
            "session_created", actor=actor, user_id=user.id, session=session.handle,
            ip=ip, user_agent=user_agent, detail={"via": via},
        )
        pair = await self.login_tokens(user.id, session, scope=requested,
                                       client_id=client.id if client is not None else None)
        if client is not None and client.backchannel_logout_uri:
            await self.backchannel.remember(user.id, session.sid, client.id,
                                            session.absolute_expires_at)
        await self._still_enabled(user.id, session, ip=ip, user_agent=user_agent, via=via)
        await self.audit.record(
            "login_succeeded", actor=actor, user_id=user.id, session=session.handle,
            ip=ip, user_agent=user_agent, detail={"via": via},
        )
        return pair

    async def _check_credentials(
        self, email: str, password: str, *, ip: str | None, user_agent: str | None, via: str
    ) -> User:
        """The user, or ``Throttled`` / ``AuthenticationFailed``; counts and audits
        failures. The one credential check of every flow that takes a password."""
        attempt = await self.throttle.admit(email, ip)
        try:
            user = await self.users.authenticate(email, password)
        except AuthenticationFailed as error:
            verdict = self.throttle.failed(attempt)
            detail: dict[str, Any] = {
                "reason": "account_disabled" if isinstance(error, AccountDisabled)
                else "bad_credentials",
                "email_fp": fingerprint(email.strip().lower()), "via": via,
            }
            target = await self.users.by_email(email)  # for the trail only; the answer is one
            target_id = target.id if target is not None else None
            if isinstance(error, AccountDisabled) and target is not None:
                detail["disabled_reason"] = target.disabled_reason
            await self.audit.record(
                "login_failed", ip=ip, user_agent=user_agent, detail=detail, user_id=target_id,
            )
            if verdict.tripped:
                scope = ("account" if verdict.account_failures >= self.throttle.account_limit
                         else "ip")
                await self.audit.record(
                    "throttle_tripped", ip=ip, user_agent=user_agent, user_id=target_id,
                    detail={**detail, "scope": scope,
                            "account_failures": verdict.account_failures,
                            "ip_failures": verdict.ip_failures},
                )
            # one answer for a disabled account and a wrong password (no enumeration)
            raise AuthenticationFailed("wrong email or password") from None
        await self.throttle.succeeded(attempt)
        return user

    async def _still_enabled(
        self, user_id: str, session: Session, *, ip: str | None, user_agent: str | None,
        via: str,
    ) -> None:
        """Re-read the account after a login wrote its session (and tokens): a disable
        that ran between the password check and those writes missed them, so the login
        undoes itself here. Disabling writes the flag before it ends anything, so either
        its sweep saw this session or this read sees the flag."""
        user = await self.users.get(user_id)
        if user is not None and not user.disabled:
            return
        await self.sessions.revoke_handle(user_id, session.handle, reason="disabled")
        await self.audit.record(
            "login_failed", ip=ip, user_agent=user_agent, user_id=user_id,
            detail={"reason": "account_disabled", "via": via},
        )
        raise AuthenticationFailed("wrong email or password")

    async def logout(
        self,
        *,
        session_id: str | None = None,
        token: str | None = None,
        identity: Identity | None = None,
    ) -> None:
        """End what authenticated the request: the session behind a cookie
        (``session_id``), or a bearer ``token`` and the session it is bound to (the
        ``sid`` of its ``identity``)."""
        if session_id is not None:
            await self.sessions.revoke(session_id, reason="logout")
            return
        if token is None:
            raise InvalidInput("logout needs the session ID or the token of the caller")
        await self.revoke_token(token)
        if identity is not None and identity.sid is not None:
            await self.end_session_by_sid(identity.user_id, identity.sid, reason="logout")

    async def change_password(
        self,
        user_id: str,
        current: str,
        new: str,
        *,
        session_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> PasswordChanged:
        """Change the password after checking the current one (throttled and audited as a
        login): every other session, every refresh family and opaque token, and (token
        versions) every access token end; the caller's own session (``session_id``)
        survives with a new ID (a privilege change).

        Raises ``AuthenticationFailed`` for a wrong current password, ``Throttled``,
        ``InvalidInput`` for a weak new one."""
        user = await self.users.get(user_id)
        if user is None:
            raise AuthenticationFailed()
        await self._check_credentials(
            user.email, current, ip=ip, user_agent=user_agent, via="password_change"
        )
        user = await self.users.set_password(user.id, new)
        actor = f"user:{user.id}"
        await self.revoke_user(user.id, reason="password_change", except_session_id=session_id)
        await self.audit.record("password_changed", actor=actor, user_id=user.id, ip=ip,
                                user_agent=user_agent)
        rotated = await self.sessions.rotate(session_id) if session_id is not None else None
        if rotated is None:
            return PasswordChanged(user)
        new_id, session = rotated
        await self.audit.record(
            "session_rotated", actor=actor, user_id=user.id, session=session.handle,
            ip=ip, user_agent=user_agent, detail={"reason": "password_change"},
        )
        return PasswordChanged(user, new_id, session)

    # -- flows: sessions, users and clients, for users and operators ------------------

    async def end_session(
        self, user_id: str, handle: str, *, reason: str = "user"
    ) -> Session | None:
        """End one of ``user_id``'s sessions by its public handle; None when the handle
        is malformed, unknown or another user's."""
        if len(handle) != HANDLE_LEN or not set(handle) <= HEX:
            return None
        return await self.sessions.revoke_handle(user_id, handle, reason=reason)

    async def end_sessions(
        self,
        user_id: str,
        *,
        reason: str,
        keep_session_id: str | None = None,
        keep_sid: str | None = None,
    ) -> list[Session]:
        """End the user's sessions ("log out everywhere else"), keeping the one whose
        secret ID is ``keep_session_id`` (a cookie caller's own) or, for a bearer caller,
        the one whose ``sid`` is ``keep_sid``. The sessions ended."""
        if keep_sid is None or keep_session_id is not None:
            return await self.sessions.revoke_all(
                user_id, except_id=keep_session_id, reason=reason
            )
        ended = []
        for session in await self.sessions.for_user(user_id):
            if session.sid != keep_sid and (
                gone := await self.sessions.revoke_handle(user_id, session.handle, reason=reason)
            ) is not None:
                ended.append(gone)
        return ended

    async def end_sessions_by_prefix(self, handle_prefix: str, *, reason: str) -> list[Session]:
        """End every session whose public handle starts with ``handle_prefix`` (4 to 64
        lowercase hex characters, else ``InvalidInput``), of any user: for operators."""
        return await self.sessions.revoke_prefix(handle_prefix, reason=reason)

    async def add_user(self, email: str, password: str, *, admin: bool = False, via: str) -> User:
        """Create an account (``InvalidInput`` for a bad email or a weak password,
        ``Conflict`` for a taken email) and audit it; ``via`` names the front end."""
        user = await self.users.create(email, password, admin=admin)
        await self.audit.record(
            "user_created", actor="system", user_id=user.id,
            detail={"admin": admin, "via": via},
        )
        return user

    # -- flows: accounts, for operators --------------------------------------------
    #
    # Every change of standing takes effect at the next request: the user record is read
    # on every session request, opaque tokens are store records, and the user's token
    # version (pushed like any revocation) refuses earlier JWTs at once. Each method
    # audits what it did; ``actor`` defaults to the request's or command's origin.

    async def get_user(self, user_id: str) -> User:
        """The account with this ID, or ``NotFound``."""
        user = await self.users.get(user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def find_user(self, email: str) -> User:
        """The account with this email address, or ``NotFound``."""
        user = await self.users.by_email(email)
        if user is None:
            raise NotFound("no user with this email address")
        return user

    async def list_users(self, *, disabled: bool | None = None) -> list[User]:
        """Accounts, oldest first; only the disabled (or enabled) ones when asked."""
        users = await self.users.list()
        return [u for u in users if disabled is None or u.disabled is disabled]

    async def disable_user(
        self, user_id: str, *, reason: str | None = None, actor: str | None = None
    ) -> UserDisabled:
        """Suspend an account: login is refused (answered as a wrong password), and every
        session, refresh family, opaque token and access token of the user ends, on every
        instance within the push delay. ``Refused`` for the last enabled admin.

        The flag is written first and everything is ended after it, so a login or a
        refresh running concurrently either is swept here or sees the flag (see
        ``_still_enabled`` and ``_authorize_grant``)."""
        user = await self.get_user(user_id)
        user = await self._guard_admins(
            user, lambda: self.users.set_disabled(user_id, reason=reason),
            rollback=lambda: self.users.set_enabled(user_id), what="disable",
        )
        await self.revocation.announce_user_changed(user_id)
        revoked = await self.revoke_user(user_id, reason="disabled")
        await self.audit.record(
            "user_disabled", actor=actor, user_id=user_id,
            detail={"reason": user.disabled_reason, "sessions": revoked.sessions,
                    "families": revoked.families},
        )
        return UserDisabled(user, revoked)

    async def enable_user(self, user_id: str, *, actor: str | None = None) -> User:
        """Let the account log in again. Nothing ended by the disable comes back."""
        await self.get_user(user_id)
        user = await self.users.set_enabled(user_id)
        await self.revocation.announce_user_changed(user_id)
        await self.audit.record("user_enabled", actor=actor, user_id=user_id)
        return user

    async def reset_password(
        self, user_id: str, password: str, *, actor: str | None = None
    ) -> UserRevoked:
        """An operator sets a new password (no current one asked): every session and
        token of the user ends, as after a password change, but none is kept."""
        await self.get_user(user_id)
        await self.users.set_password(user_id, password)
        revoked = await self.revoke_user(user_id, reason="password_reset")
        await self.audit.record(
            "password_reset", actor=actor, user_id=user_id,
            detail={"sessions": revoked.sessions, "families": revoked.families},
        )
        return revoked

    async def set_scopes(
        self, user_id: str, scopes: object, *, actor: str | None = None
    ) -> User:
        """Replace the scopes the user may be granted (``InvalidScope`` for a bad name).

        A change applies at the next request: sessions take the user's scopes from the
        record, whose cached copies the announced ``user`` event drops everywhere. A
        removed scope also ends what holds it: opaque tokens holding it are deleted; and
        the user's token version is bumped (pushed to every instance), so every earlier
        JWT is refused and the client's next refresh mints the narrowed set (``_authorize_grant``).
        Adding scopes ends nothing: new tokens carry them as they are granted."""
        before = await self.get_user(user_id)
        user = await self.users.set_scopes(user_id, scopes)
        await self.revocation.announce_user_changed(user_id)  # sessions see it next request
        removed = sorted(set(before.scopes) - set(user.scopes))
        added = sorted(set(user.scopes) - set(before.scopes))
        if removed:
            await self.opaque.revoke_scopes(user_id, frozenset(removed))
            if self.settings.revocation.token_version:
                version = await self.revocation.bump_version(user_id)
                await self.audit.record(
                    "user_version_bumped", actor=actor, user_id=user_id,
                    detail={"reason": "scopes_removed", "ver": version},
                )
        await self.audit.record(
            "user_scopes_changed", actor=actor, user_id=user_id,
            detail={"added": added, "removed": removed},
        )
        return user

    async def set_admin(self, user_id: str, admin: bool, *, actor: str | None = None) -> User:
        """Grant or take away admin rights (``Refused`` for the last enabled admin).
        The change is announced (``UserCache``), so it applies at the next request."""
        user = await self.get_user(user_id)
        if user.is_admin == admin:
            return user
        if admin:
            user = await self.users.set_admin(user_id, True)
        else:
            user = await self._guard_admins(
                user, lambda: self.users.set_admin(user_id, False),
                rollback=lambda: self.users.set_admin(user_id, True), what="demote",
            )
        await self.revocation.announce_user_changed(user_id)
        await self.audit.record("user_admin_changed", actor=actor, user_id=user_id,
                                detail={"admin": admin})
        return user

    async def delete_user(self, user_id: str, *, actor: str | None = None) -> UserRevoked:
        """Delete an account and everything kept about it: the user record and its email
        mapping, sessions, refresh families, opaque tokens, throttle counters; every JWT
        is refused (token version) and the version counter expires once no token it
        could judge is alive. The audit trail keeps the user ID and fingerprints only.
        ``Refused`` for the last enabled admin."""
        user = await self.get_user(user_id)
        if user.is_admin and not user.disabled:  # first out of the admin count, as a disable
            await self._guard_admins(
                user, lambda: self.users.set_disabled(user_id, reason="deleting"),
                rollback=lambda: self.users.set_enabled(user_id), what="delete",
            )
        else:
            await self.users.set_disabled(user_id, reason="deleting")
        revoked = await self.revoke_user(user_id, reason="deleted")
        await self.throttle.forget(user.email)
        await self.users.delete(user_id)
        await self.revocation.announce_user_changed(user_id)
        await self.store.patch(  # keeps refusing old JWTs in store mode until they expire
            VERSION, user_id, {}, expires_at=self.clock.now() + self.revocation.lifetime
        )
        # Before the deletion event, whose IP and agent are the operator's, not the user's.
        scrubbed = await self.store.scrub_audit(user_id, PERSONAL_FIELDS)
        await self.audit.record(
            "user_deleted", actor=actor, user_id=user_id,
            detail={"email_fp": fingerprint(user.email), "sessions": revoked.sessions,
                    "families": revoked.families, "audit_scrubbed": scrubbed},
        )
        return revoked

    async def _guard_admins(
        self,
        user: User,
        change: Callable[[], Awaitable[User]],
        *,
        rollback: Callable[[], Awaitable[User]],
        what: str,
    ) -> User:
        """Apply ``change`` (which takes ``user`` out of the enabled admins), then count:
        if no enabled admin is left, undo it and raise ``Refused``. Counting after the
        write, not before, means two admins disabling each other at once cannot both
        succeed (both see zero and both undo) and there is always one left."""
        changed = await change()
        if not user.is_admin or user.disabled:
            return changed
        if not any(u.is_admin and not u.disabled for u in await self.users.list()):
            await rollback()
            # Another process may have cached the record between change and rollback.
            await self.revocation.announce_user_changed(user.id)
            raise Refused(f"cannot {what} the last enabled admin: make another admin first")
        return changed

    async def add_client(
        self,
        name: str,
        *,
        redirect_uris: tuple[str, ...] = (),
        public: bool = False,
        scopes: tuple[str, ...] = (),
        grant_types: tuple[str, ...] | None = None,
        first_party: bool = False,
        backchannel_logout_uri: str | None = None,
        post_logout_redirect_uris: tuple[str, ...] = (),
    ) -> tuple[Client, str | None]:
        """Register an OAuth client (see ``authstate.clients``) and audit it; its secret
        is returned only here (only its hash is stored), None for a public client."""
        client, secret = await self.clients.create(
            name, redirect_uris=redirect_uris, public=public, scopes=scopes,
            grant_types=grant_types, first_party=first_party,
            backchannel_logout_uri=backchannel_logout_uri,
            post_logout_redirect_uris=post_logout_redirect_uris,
        )
        await self.audit.record("client_created", actor="system",
                                detail={"client_id": client.id, "name": client.name})
        return client, secret

    def sweeper(self) -> Sweeper:
        """A background sweeper of this store, every ``settings.service.cleanup_interval``
        seconds (the caller starts and stops it, so a library user decides whether one
        runs)."""
        return Sweeper(
            self.store, self.audit, metrics=self.metrics,
            interval=self.settings.service.cleanup_interval,
        )

    async def remove_client(self, client_id: str) -> Client | None:
        """Delete a client (None when unknown): it can no longer authenticate, start a
        code flow or refresh; tokens it already holds live until they expire or are
        revoked."""
        client = await self.clients.remove(client_id)
        if client is not None:
            await self.audit.record("client_removed", actor="system",
                                    detail={"client_id": client.id, "name": client.name})
        return client

    async def rotate_client_secret(self, client_id: str) -> tuple[Client, str]:
        """A new secret for a confidential client, shown once; the old one stops at once."""
        client, secret = await self.clients.rotate_secret(client_id)
        await self.audit.record("client_secret_rotated", actor="system",
                                detail={"client_id": client.id})
        return client, secret

    async def client_for_request(
        self, client_id: str | None, secret: str | None
    ) -> Client | None:
        """The client a token-endpoint request speaks for: None when it names none; a
        confidential client whose secret checks; a public client named by ``client_id``
        alone. Anything else is ``InvalidClient`` (RFC 6749 §2.3, §5.2)."""
        if secret is not None:
            client = await self.clients.authenticate(client_id or "", secret)
            if client is None:
                raise InvalidClient("client authentication failed")
            return client
        if client_id is None:
            return None
        client = await self.clients.get(client_id)
        if client is None or not client.public:
            raise InvalidClient("client authentication failed")
        return client

    # -- flows: the authorization code grant (RFC 6749 §4.1, PKCE RFC 7636) ------------

    async def authorize(
        self, request: AuthorizationRequest, session: Session, user: User
    ) -> str:
        """An authorization code for a checked request and the logged-in user of
        ``session`` (``InvalidScope`` when the user may not have a requested scope)."""
        scopes.within(request.scope, user.scopes, "user")
        if session.user_id != user.id:
            raise InvalidInput("the session belongs to another user")
        now = self.clock.now()
        code = await self.codes.issue(CodeGrant(
            client_id=request.client.id, redirect_uri=request.redirect_uri,
            redirect_uri_given=request.redirect_uri_given,
            code_challenge=request.code_challenge, user_id=user.id, sid=session.sid,
            scope=request.scope, auth_time=session.created_at, issued_at=now,
            nonce=request.nonce,
        ))
        if request.client.backchannel_logout_uri:  # who to tell when this session ends
            await self.backchannel.remember(user.id, session.sid, request.client.id,
                                            session.absolute_expires_at)
        await self.audit.record(
            "authorization_code_issued", user_id=user.id, session=session.handle,
            detail={"client_id": request.client.id, "scope": scopes.space(request.scope)},
        )
        return code

    async def exchange_code(
        self, code: object, *, client: Client, redirect_uri: str | None, verifier: object
    ) -> TokenPair:
        """RFC 6749 §4.1.3: tokens for a code, once. A second use of a code revokes the
        refresh family and the access token it gave and is ``InvalidGrant``."""
        if not client.allows("authorization_code"):
            raise UnauthorizedClient("this client may not use the authorization code grant")
        redeemed = await self.codes.redeem(code, client_id=client.id,
                                           redirect_uri=redirect_uri, verifier=verifier)
        grant = redeemed.grant
        if not redeemed.first:
            record = await self.codes.reused(redeemed.key)
            await self._revoke_code_tokens(record.value if record is not None else {})
            await self.audit.record("authorization_code_reused", user_id=grant.user_id,
                                    detail={"client_id": client.id})
            raise InvalidGrant("the authorization code was already used")
        if not any(s.sid == grant.sid for s in await self.sessions.for_user(grant.user_id)):
            # the login behind the code ended (logout, revoke, password change) since:
            # a family started now would outlive the session that was meant to end it
            raise InvalidGrant("the session that authorized the code has ended")
        family = secrets.token_urlsafe(16)
        pair = await self.refresh.start_family(grant.user_id, grant.sid, grant.scope,
                                               client_id=client.id, family=family)
        claims = self.tokens.verify(pair.access_token)
        issued = {"family": family, "jti": claims["jti"], "exp": float(claims["exp"])}
        if not await self.codes.issued(redeemed.key, **issued):
            # a second use came before these were noted: the answer still goes out (this
            # call did win the code), but what it carries is revoked, as for any reuse
            await self._revoke_code_tokens(issued)
        if "openid" in grant.scope:
            pair = replace(pair, id_token=await self._id_token(grant, pair.access_token))
        return pair

    async def _id_token(self, grant: CodeGrant, access_token: str) -> str:
        """OIDC Core §3.1.3.3: the ID token of a code exchange, with the claims the
        granted ``email``/``profile`` scopes release (see ``authstate.oauth.oidc``).
        Issued at the code exchange only, not on refresh (§12.2 makes that optional,
        and the refresh grant does not keep ``auth_time`` or ``nonce``)."""
        user = await self.users.get(grant.user_id)
        return oidc.id_token(
            self.keys, issuer=self.settings.tokens.issuer, client_id=grant.client_id,
            user_id=grant.user_id, sid=grant.sid, auth_time=grant.auth_time,
            access_token=access_token, nonce=grant.nonce,
            ttl=self.settings.tokens.access_ttl, now=self.clock.now(),
            extra=oidc.user_claims(user, grant.scope),
        )

    async def userinfo(self, identity: Identity) -> dict[str, Any]:
        """OIDC Core §5.3: the claims about the user of an access token granted
        ``openid`` (``InsufficientScope`` otherwise). A disabled or deleted account's
        tokens are already refused by revocation; a user ID with no account here has
        only ``sub``."""
        if "openid" not in identity.scope:
            raise InsufficientScope("the token was not granted the openid scope")
        user = await self.users.get(identity.user_id)
        return {"sub": identity.user_id, **oidc.user_claims(user, identity.scope)}

    async def logout_request(
        self, id_token_hint: str | None, client_id: str | None,
        post_logout_redirect_uri: str | None,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Check an RP-initiated logout request (RP-Initiated Logout 1.0 §2): the
        ``id_token_hint``'s claims (signed by our keys and issued here; it may have
        expired) and the ``post_logout_redirect_uri`` to go back to, which must be one the
        client (``client_id``, or the hint's ``aud``) registered, compared exactly.
        ``InvalidRequest`` otherwise, before anything is ended."""
        hint = None
        if id_token_hint is not None:
            try:
                hint = oidc.read_id_token_hint(self.keys, id_token_hint,
                                               issuer=self.settings.tokens.issuer)
            except InvalidToken:
                raise InvalidRequest(
                    "id_token_hint is not an ID token of this service") from None
            if client_id is not None and client_id != hint["aud"]:
                raise InvalidRequest("client_id is not the id_token_hint's audience")
            client_id = hint["aud"]
        if post_logout_redirect_uri is None:
            return hint, None
        client = await self.clients.get(client_id)
        if client is None:
            raise InvalidRequest("post_logout_redirect_uri needs id_token_hint or client_id")
        if post_logout_redirect_uri not in client.post_logout_redirect_uris:
            raise InvalidRequest("post_logout_redirect_uri is not registered for the client")
        return hint, post_logout_redirect_uri

    async def rp_logout(
        self, session_id: str, session: Session, *, client_id: str | None, confirmed: bool
    ) -> None:
        """End the browser's session for an RP-initiated logout (after
        ``logout_request``), as ``logout`` does (so back-channel logout tells the
        session's clients), and audit who asked and whether the user confirmed."""
        await self.logout(session_id=session_id)
        await self.audit.record("rp_logout", user_id=session.user_id, session=session.handle,
                                detail={"client_id": client_id, "confirmed": confirmed})

    async def _revoke_code_tokens(self, given: Mapping[str, Any]) -> None:
        family, jti, exp = given.get("family"), given.get("jti"), given.get("exp")
        if isinstance(family, str):
            await self.refresh.revoke_family(family)
        if isinstance(jti, str) and isinstance(exp, float | int):
            await self.revocation.revoke_jti(jti, float(exp))

    async def cleanup(self, *, batch: int = BATCH) -> CleanupReport:
        """Reclaim expired records and audit events past retention now, in batches of
        ``batch`` (``authstate serve`` also runs this in the background)."""
        return await cleanup_once(self.store, self.audit, metrics=self.metrics, batch=batch)

    # -- tokens: the hybrid -----------------------------------------------------------

    async def issue_for_session(
        self, session: Session, *, scope: tuple[str, ...] = ()
    ) -> tuple[str, dict[str, Any]]:
        """A short access token for a live session (to call other services), bound to
        its ``sid`` and never outliving it; revoking the session revokes the token."""
        ttl = min(self.settings.tokens.access_ttl, int(session.expires_at - self.clock.now()))
        if ttl < 1 or session.anonymous:
            raise SessionNotFound()
        token, claims = self.tokens.issue(
            session.user_id, sid=session.sid, scope=scope or None,
            ver=await self._version(session.user_id), ttl=ttl,
        )
        await self.audit.record(
            "access_token_issued", user_id=session.user_id, session=session.handle,
            token=token, detail={"kind": "access", "via": "session"},
        )
        return token, claims

    async def login_tokens(
        self,
        user_id: str,
        session: Session,
        *,
        scope: tuple[str, ...] = (),
        client_id: str | None = None,
    ) -> TokenPair:
        """An access token and the first refresh token of a new family, bound to the
        session just created at login."""
        if session.user_id != user_id:
            raise InvalidInput("the session belongs to another user")
        return await self.refresh.start_family(user_id, session.sid, scope, client_id=client_id)

    async def refresh_tokens(
        self,
        refresh_token: object,
        *,
        client: Client | Literal[AnyClient.ANY] | None = ANY_CLIENT,
        scope: str | None = None,
    ) -> TokenPair:
        """Rotate a refresh token (``InvalidGrant``, ``RefreshReused`` or
        ``StoreUnavailable`` otherwise; see ``authstate.tokens.refresh``). A token issued to a
        client is refused to any other client, and to a caller with no client
        (``client=None``, as the token endpoint passes it); server-side code leaving
        ``client`` out is not checked. ``scope`` (RFC 6749 §6) may repeat the granted
        scope; narrowing it on refresh is not supported (``InvalidScope``)."""
        if isinstance(client, Client) and not client.allows("refresh_token"):
            raise UnauthorizedClient("this client may not use the refresh_token grant")
        requested = scopes.parse(scope) if scope is not None else None
        presented: ClientCheck = client.id if isinstance(client, Client) else client
        return await self.refresh.rotate(refresh_token, client_id=presented,
                                         check_scope=requested)

    @timed_verify("jwt")
    async def authenticate_bearer(self, token: object) -> Identity:
        """The identity behind an ``Authorization: Bearer`` token, JWT or opaque.

        Raises an ``InvalidToken`` subclass for a token that is not valid (revoked
        included); ``BusUnavailable`` or ``StoreUnavailable`` when revocation cannot be
        checked right now (fail closed; the web layer answers 503)."""
        if looks_opaque(token):
            info = await self.opaque.lookup(token)
            if info is None:
                raise InvalidToken()
            return Identity(
                user_id=info.user_id, method="opaque", expires_at=info.expires_at,
                sid=info.sid, scope=info.scope, claims=info.claims(),
            )
        if not isinstance(token, str):
            raise MalformedToken("a bearer token is a string")
        local = self.revocation.local
        claims = self.tokens.verify(token)  # in push mode, revocation is checked in here
        if not local:
            await self.revocation.check(claims)
        return _jwt_identity(claims)

    def authenticate_cached(self, token: str) -> Identity | None:
        """``authenticate_bearer``'s answer for a JWT it has already verified and cached,
        told without awaiting (CPU only: a hash and dictionary reads), from any thread;
        None when it cannot be told so (not cached, not in push mode, revoked since),
        and the caller then awaits ``authenticate_bearer`` on the loop, which also gives
        the precise error.

        For the sync face (``authstate.sync``), whose request threads would otherwise hop
        to the event loop for every request. It reads the verified-token cache without
        changing it (``AccessTokens.cached``) and checks the token against the local
        revocation copy again (dictionary reads), so a revocation applied by the loop is
        refused here from that moment, even before the cache has evicted the token."""
        if not self.revocation.local:
            return None
        start = time.perf_counter()
        claims = self.tokens.cached(token)
        if claims is None:
            return None
        try:
            self.revocation.check_local(claims)
        except TokenRevoked:
            return None
        identity = _jwt_identity(claims)
        if self.metrics is not None:
            self.metrics.observe_verify("jwt", time.perf_counter() - start)
        return identity

    async def introspect(self, token: object, hint: object = None) -> dict[str, Any]:
        """RFC 7662: the claims of a valid token, else exactly ``{"active": False}``."""
        return await introspection.introspect(self, token, hint)

    async def revoke_token(self, token: object, hint: object = None) -> None:
        """RFC 7009: revoke any token this service issued; silent for unknown ones."""
        await introspection.revoke(self, token, hint)

    async def revoke_user(
        self, user_id: str, *, reason: str = "admin", except_session_id: str | None = None
    ) -> UserRevoked:
        """Log the user out everywhere: refresh families, sessions, opaque tokens, and
        (token versions) every access token issued so far; each done once, here.
        ``except_session_id`` keeps the caller's own session (a password change).

        Families go first, so that their count includes those bound to sessions (ending a
        session would otherwise revoke them on the way, uncounted)."""
        families = await self.refresh.revoke_user(user_id)
        ended = await self.sessions.revoke_all(user_id, except_id=except_session_id, reason=reason)
        await self.opaque.revoke_user(user_id)
        if self.settings.revocation.token_version:
            version = await self.revocation.bump_version(user_id)
            await self.audit.record(
                "user_version_bumped", user_id=user_id,
                detail={"reason": reason, "ver": version},
            )
        return UserRevoked(sessions=len(ended), families=families)

    async def rotate_keys(
        self, *, algorithm: str | None = None, now: bool = False
    ) -> keystore.RotationResult:
        """Rotate the signing key (``algorithm``: the new key's, else the signer's).

        The new key is published at once and signs after ``key_prepublish`` seconds
        (``now``: at once, for an emergency; verifiers with a cached JWKS then refuse
        its tokens until they refetch). Every instance hears of it over the bus, or at
        its next key poll."""
        async with self.key_watcher.lock:
            result = await keystore.rotate(
                self.store, self.keys, clock=self.clock, algorithm=algorithm,
                audit=self.audit,
                prepublish=0.0 if now else float(self.settings.tokens.key_prepublish),
            )
        await self.revocation.announce_key_retired(result.signer.kid)
        return result

    async def revoke_key(self, kid: str) -> keystore.Revocation:
        """Revoke the key ``kid`` at once: every token it signed is refused here now, on
        other instances as soon as the bus or their key poll tells them. Revoking the
        signer puts a replacement in at once (see ``keys.revoke``)."""
        async with self.key_watcher.lock:
            result = await keystore.revoke(self.store, self.keys, kid, clock=self.clock,
                                           audit=self.audit)
        await self.revocation.announce_key_retired(kid)
        return result

    async def rewrap_keys(self) -> int:
        """Re-seal every stored private key under the current key-encryption key; how
        many. Instances configured with the same KEKs follow at their next reload."""
        async with self.key_watcher.lock:
            return await keystore.rewrap(self.store, self.keys.wrap, clock=self.clock)

    async def poll_keys(self) -> bool:
        """One key poll step (the background loop runs it every ``key_poll_interval``):
        reload the key set when the store's version moved. True when it changed."""
        return await self.key_watcher.poll()  # a new key set version empties the caches

    async def _poll_keys_forever(self) -> None:
        outage = OutageLog(logger, "key set poll")
        while True:
            await asyncio.sleep(self.settings.tokens.key_poll_interval)
            try:
                await self.poll_keys()
                outage.recovered()
            except StoreUnavailable as error:
                outage.failed(error)
            except AuthstateError as error:  # e.g. a key sealed under an unknown KEK
                logger.error("key set not reloaded: %s", error.message)

    async def check_persistence(self) -> bool | None:
        """Warn when the store forgets everything on restart (a Redis without RDB or
        AOF); whether it persists, None when it cannot tell or the question is moot."""
        probe = getattr(self.store, "persistence", None)
        if probe is None:
            return None
        persists: bool | None = await probe()
        if persists is False:
            logger.warning(NO_PERSISTENCE_WARNING)
        elif persists is None:
            logger.info("cannot tell whether the Redis store persists (CONFIG is not "
                        "available); make sure it does")
        return persists

    async def ping(self) -> str:
        """The store's kind (its URL scheme) when it answers; ``StoreError`` when it
        does not. For health checks, so that they need not reach into the store."""
        await self.store.ping()
        return self.store.url_scheme

    async def refresh_gauges(self) -> None:
        """Re-read the gauges the metrics report (a no-op with metrics off)."""
        if self.metrics is not None:
            await self.metrics.refresh_gauges(self.store)

    async def _version(self, user_id: str) -> int | None:
        if not self.settings.revocation.token_version:
            return None
        return await self.revocation.version(user_id)

    async def _mint(self, grant: Grant) -> tuple[str, float]:
        extra = {"client_id": grant.client_id} if grant.client_id else None
        token, claims = self.tokens.issue(
            grant.user_id, sid=grant.sid, scope=grant.scope or None,
            ver=await self._version(grant.user_id), extra=extra,
        )
        return token, float(claims["exp"])

    async def _authorize_grant(self, grant: Grant) -> Grant:
        """A refresh mints for the account as it is now: a disabled user's grant is
        refused, and its scopes are narrowed to those the user still holds
        (``InvalidScope`` when none of them is left). A user ID with no account here
        is the application's own (the library takes any ID): its grant is as issued;
        a deleted account's families are gone before its record is."""
        user = await self.users.get(grant.user_id)
        if user is None:
            return grant
        if user.disabled:
            raise InvalidGrant()
        if not grant.scope:
            return grant
        allowed = set(user.scopes) | scopes.BASE  # openid, profile, email: everyone's
        scope = tuple(s for s in grant.scope if s in allowed)
        if not scope:
            raise InvalidScope("the scopes of this grant are no longer allowed")
        return replace(grant, scope=scope) if scope != grant.scope else grant

    async def end_session_by_sid(self, user_id: str, sid: str, *, reason: str) -> None:
        """End the session ``sid`` of ``user_id`` (a stolen or revoked refresh token),
        and tombstone the ``sid`` even when the session has already expired."""
        for session in await self.sessions.for_user(user_id):
            if session.sid == sid:
                await self.sessions.revoke_handle(user_id, session.handle, reason=reason)
                return
        if self.settings.revocation.session_bound:
            await self.revocation.revoke_sid(sid)

    async def _refresh_reused(self, grant: Grant) -> None:
        await self.end_session_by_sid(grant.user_id, grant.sid, reason="refresh_reuse")

    async def _session_ended(self, session: Session, reason: str) -> None:
        """Every way a session ends passes here: audit it, revoke its refresh families
        and opaque tokens, and tombstone its ``sid`` so bound access tokens die too."""
        if session.anonymous:  # a visitor's session: no login, nothing bound to it
            return
        await self.audit.record(
            "session_revoked", user_id=session.user_id, session=session.handle,
            detail={"reason": reason},
        )
        await self.refresh.revoke_session(session.user_id, session.sid)
        await self.opaque.revoke_session(session.user_id, session.sid)
        if self.settings.revocation.session_bound:
            await self.revocation.revoke_sid(session.sid)
        # OIDC Back-Channel Logout: queued here, delivered in the background
        await self.backchannel.session_ended(session.user_id, session.sid)

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock | None = None) -> AuthState:
        """Open the store named by ``settings.store.url`` and everything that rests on it."""
        clock = clock or SystemClock()
        store = await open_store(settings.store.url, clock=clock,
                                 namespace=settings.store.namespace)
        state = cls(settings, store, clock=clock)
        try:
            await state.start()
        except BaseException:
            await state.close()
            raise
        return state

    async def start(self) -> None:
        """Load (or create) the shared key set and subscribe to the revocation bus.
        ``open`` and ``async with`` call it; until then no token can be issued and
        revocation checks read the store."""
        if self._started:
            return
        await self.check_persistence()
        await self.key_watcher.start()
        await self.revocation.start()
        self._key_poll = asyncio.create_task(self._poll_keys_forever(),
                                             name="authstate-key-poll")
        self.backchannel.start()  # also resumes the outbox a stopped process left
        self._started = True

    async def close(self) -> None:
        if self._key_poll is not None:
            self._key_poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._key_poll
            self._key_poll = None
        await self.backchannel.close()
        await self.revocation.close()
        self._started = False
        await self.store.close()

    async def __aenter__(self) -> AuthState:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
