"""The key set a service signs and verifies with, and its lifecycle on the store.

Lifecycle, driven by timestamps stored with each key (``authstate.jose.jwk.SigningKey``)
and read against the injected clock, so every instance computes the same state without
a timer of its own:

    published --activate_at--> signing --not_after--> verify_only --retire_at--> retired
    (any of the first three) --revoke--> revoked, at once

A rotated-in key is *published* (in the JWKS, not signing) until ``activate_at`` =
rotation time + the pre-publication period, which is at least the JWKS ``max-age``, so
every verifier that caches the JWKS holds the key before its first token exists. At that
same instant the previous signer stops signing (``not_after``) and verifies until
``retire_at`` = ``not_after`` + the longest token lifetime + leeway, after which none of
its tokens can be alive. The signer is chosen at sign time (``KeySet.signer_at(now)``),
so no token is signed by a key outside its signing window. ``revoke`` ends a key at once.

Several service instances share one key set through the store (kind ``"key"``, record
key = kid) and a version counter (kind ``"key_version"``) that every change bumps: an
instance polls that one cheap record and reloads the set when it moves (``KeyWatcher``),
and a version that went backwards or vanished means the store lost the keys (a Redis
without persistence restarted). Private keys are stored as JWKs, sealed under the KEK
when one is configured (``authstate.keywrap``).

``KeySet`` itself is pure memory, so a verify-only process (``authstate.verifier``) uses
it without importing a store: the store functions only name ``Store`` in annotations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from authstate.clock import ACCESS_TTL_DEFAULT, LEEWAY_DEFAULT, Clock, SystemClock
from authstate.errors import (
    ConfigurationError,
    InvalidInput,
    UnknownKey,
    UnusableKey,
    WeakKeyError,
)
from authstate.jose.algorithms import DEFAULT_ALGORITHM
from authstate.jose.algorithms import spec as algorithm
from authstate.jose.jwk import (
    ACTIVE,
    ENDED,
    KID_MAX,
    RETIRED,
    REVOKED,
    VERIFY_ONLY,
    KeyStatus,
    SigningKey,
    signature_use_problem,
)

if TYPE_CHECKING:
    import asyncio

    from authstate.audit import AuditLog
    from authstate.keywrap import KeyWrap
    from authstate.stores.base import JSON, Store

logger = logging.getLogger("authstate.keys")

KIND = "key"
VERSION_KIND = "key_version"
VERSION_KEY = "set"
GENESIS_KIND = "key_genesis"
GENESIS_TTL = 60.0  # long enough for a racing instance to adopt the winner's first key
RETIRED_KEEP = 7 * 86400.0  # retired keys stay listed for a week, then the store drops them


# --- the key set --------------------------------------------------------------------

class KeySet:
    """The keys a service signs and verifies with, looked up by ``kid``.

    At most one key is the signer at any instant: of the keys whose signing window holds
    that instant, the most recently activated (``signer_at``; ``signer`` asks the set's
    clock). Verification uses every key that is not retired or revoked. The set is
    changed only by replacing its whole mapping, so a reader never sees a half-applied
    rotation; ``version`` moves on every change, which is how caches built on the set
    know to drop what they hold.
    """

    __slots__ = ("_candidates", "_keys", "_usable", "clock", "leeway", "max_token_ttl",
                 "version", "wrap")

    def __init__(
        self,
        keys: Iterable[SigningKey] = (),
        *,
        max_token_ttl: float = ACCESS_TTL_DEFAULT,
        leeway: float = LEEWAY_DEFAULT,
        clock: Clock | None = None,
        wrap: KeyWrap | None = None,
    ) -> None:
        self.max_token_ttl = float(max_token_ttl)
        self.leeway = float(leeway)
        self.clock: Clock = clock or SystemClock()
        self.wrap = wrap  # seals private halves when the set is written to a store
        self.version = 0
        self._keys: Mapping[str, SigningKey] = MappingProxyType({})
        self._usable: Mapping[str, SigningKey] = MappingProxyType({})
        self._candidates: tuple[SigningKey, ...] = ()
        self._install(list(keys))

    def _install(self, keys: list[SigningKey]) -> None:
        by_kid: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise UnusableKey("two keys share one kid; a kid must name exactly one key")
            by_kid[key.kid] = key
        usable = {kid: k for kid, k in by_kid.items() if k.usable}
        candidates = [k for k in usable.values() if k.can_sign]
        self._keys = MappingProxyType(by_kid)
        self._usable = MappingProxyType(usable)
        # newest first, so ``signer_at`` takes the first one whose window holds ``now``
        self._candidates = tuple(sorted(candidates, key=lambda k: (k.activation, k.kid),
                                        reverse=True))
        self.version += 1

    # --- reading ---

    def signer_at(self, now: float) -> SigningKey:
        """The key that signs a token made at ``now``: checked at sign time, so a key
        is never used before its activation or after it stopped signing."""
        for key in self._candidates:
            if key.signs_at(now):
                return key
        raise ConfigurationError("the key set has no active signing key")

    @property
    def signer(self) -> SigningKey:
        return self.signer_at(self.clock.now())

    @property
    def has_signer(self) -> bool:
        now = self.clock.now()
        return any(k.signs_at(now) for k in self._candidates)

    def get(self, kid: str) -> SigningKey | None:
        """The key named ``kid`` if it may still verify (not retired)."""
        return self._usable.get(kid)

    def select(self, kid: object) -> SigningKey:
        """The key a token with header ``kid`` must verify under.

        Without a kid the choice is unambiguous only when the set holds one usable key.
        """
        if kid is None:
            if len(self._usable) == 1:
                return next(iter(self._usable.values()))
            raise UnknownKey("the token has no kid and the key set holds several keys")
        key = self._usable.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnknownKey("no key matches the token's kid")
        return key

    def all(self) -> list[SigningKey]:
        """Every key including retired ones, oldest first."""
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.kid))

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(list(self._usable.values()))

    def __len__(self) -> int:
        return len(self._usable)

    def __contains__(self, kid: object) -> bool:
        return kid in self._usable

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set other services verify with: public members only, usable keys only."""
        keys = [jwk for k in self.all() if k.usable and (jwk := k.public_jwk()) is not None]
        return {"keys": keys}

    # --- building ---

    @classmethod
    def generate(
        cls, alg: str = DEFAULT_ALGORITHM, *, now: float = 0.0,
        max_token_ttl: float = ACCESS_TTL_DEFAULT,
        leeway: float = LEEWAY_DEFAULT, clock: Clock | None = None,
    ) -> KeySet:
        return cls([SigningKey.generate(alg, now=now)], max_token_ttl=max_token_ttl,
                   leeway=leeway, clock=clock)

    @classmethod
    def from_jwks(
        cls,
        jwks: Mapping[str, Any],
        *,
        public_only: bool = False,
        skip_unusable: bool = False,
        allow_weak: bool = False,
    ) -> KeySet:
        """A verification set from a JWK Set (RFC 7517 §5).

        Refused whole: duplicate kids, a mix of secret and public-key keys, a mix of
        public and private keys, or (``public_only``, for sets fetched from elsewhere)
        any private or secret member. Keys for encryption are left out. A weak or
        malformed key refuses the set unless ``skip_unusable``.
        """
        raw = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(raw, list):
            raise UnusableKey("a JWK Set is an object with a \"keys\" array")
        entries = [k for k in raw if isinstance(k, Mapping)]
        if len(entries) != len(raw):
            raise UnusableKey("every member of \"keys\" must be a JSON object")
        kids = [k.get("kid") for k in entries if k.get("kid") is not None]
        if len(kids) != len(set(map(str, kids))):
            raise UnusableKey("the JWK Set has two keys with one kid")
        kinds = {"oct" if k.get("kty") == "oct" else "asymmetric" for k in entries}
        if len(kinds) > 1:
            raise UnusableKey("the JWK Set mixes HMAC secrets with public-key keys")
        private = {k.get("kty") == "oct" or "d" in k for k in entries}
        if len(private) > 1:
            raise UnusableKey("the JWK Set mixes public and private keys")
        if public_only and True in private:
            raise UnusableKey("a published JWK Set must not contain private or secret keys")
        keys: list[SigningKey] = []
        for entry in entries:
            if signature_use_problem(entry) is not None:
                continue
            try:
                keys.append(SigningKey.from_jwk(entry, allow_weak=allow_weak))
            except (UnusableKey, WeakKeyError):
                if not skip_unusable:
                    raise
        if not keys:
            raise UnusableKey("the JWK Set holds no usable signature key")
        return cls(keys)

    # --- changing ---

    def replace_keys(self, keys: Iterable[SigningKey]) -> None:
        """Swap in a new key list at once (a reload from the store or a JWKS refresh)."""
        self._install(list(keys))

    def remove(self, kid: str) -> SigningKey | None:
        """Drop a key at once, e.g. after a compromise; its tokens stop verifying."""
        key = self._keys.get(kid)
        if key is not None:
            self._install([k for k in self._keys.values() if k.kid != kid])
        return key

    def rotate(self, new_key: SigningKey | None = None, *, now: float,
               alg: str | None = None, prepublish: float = 0.0) -> RotationResult:
        """Bring in ``new_key`` (or a fresh key of ``alg``, default the signer's): it is
        published at once and signs from ``now + prepublish`` (0: at once).

        At that instant every key still due to sign stops signing and verifies until
        ``activation + max_token_ttl + leeway``: by then each token it signed has
        expired, so it can retire without breaking anyone.
        """
        if prepublish < 0:
            raise ConfigurationError("the pre-publication period cannot be negative")
        if new_key is None:
            current = next(iter(self._candidates), None)
            name = alg or (current.alg if current is not None else DEFAULT_ALGORITHM)
            new_key = SigningKey.generate(name, now=now)
        elif new_key.status != ACTIVE or not new_key.can_sign:
            raise ConfigurationError("the new signer must be an active key with a private part")
        activate_at = now + prepublish
        retire_at = activate_at + self.max_token_ttl + self.leeway
        # The status stays "active": the times alone say when it stops signing, so an
        # instance reading this record computes the same state at the same instant.
        demoted = [
            k.with_status(ACTIVE, not_after=activate_at, retire_at=retire_at)
            for k in self._keys.values()
            if k.status == ACTIVE and (k.not_after is None or k.not_after > activate_at)
        ]
        changed = {k.kid for k in demoted}
        kept = [k for k in self._keys.values() if k.kid not in changed]
        new_key = replace(new_key, created_at=max(new_key.created_at, now),
                          activate_at=activate_at)
        self._install([*kept, *demoted, new_key])
        return RotationResult(new_key, tuple(demoted), ())

    def revoke(self, kid: str, *, now: float) -> SigningKey:
        """End ``kid`` at once: it neither signs nor verifies again. The revoked key
        (its private half dropped); ``InvalidInput`` when the set has no such key."""
        key = self._keys.get(kid)
        if key is None:
            raise InvalidInput(f"no key with kid {kid[:KID_MAX]!r}")
        revoked = _public_half(key, status=REVOKED, revoked_at=now)
        self._install([*(k for k in self._keys.values() if k.kid != kid), revoked])
        return revoked

    def retire_expired(self, now: float) -> list[SigningKey]:
        """Retire verify-only keys whose ``retire_at`` has passed; the keys retired, so
        the caller can announce each "kid retired"."""
        retired = [
            k.with_status(RETIRED) for k in self._keys.values()
            if k.status not in ENDED and k.retire_at is not None and k.retire_at <= now
        ]
        if retired:
            done = {k.kid for k in retired}
            self._install([*(k for k in self._keys.values() if k.kid not in done), *retired])
        return retired


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What a rotation changed: the new signer, the keys turned verify-only, and any
    keys retired on the way (to announce)."""

    signer: SigningKey
    demoted: tuple[SigningKey, ...]
    retired: tuple[SigningKey, ...]


# --- persistence --------------------------------------------------------------------


def _public_half(key: SigningKey, *, status: KeyStatus,
                 revoked_at: float | None = None) -> SigningKey:
    """``key`` ended: it keeps its public half for listing and nothing that could sign
    or verify."""
    return replace(key, status=status, revoked_at=revoked_at, verify_signature=_never,
                   create_signature=None, private_key=None, secret=None)


def _aad(kid: object, alg: object) -> bytes:
    return f"{kid}\0{alg}".encode()


def to_record(key: SigningKey, wrap: KeyWrap | None = None) -> JSON:
    """The stored form. A retired or revoked key keeps only its public half (an HMAC
    key nothing): it will never sign or verify again, so its secret has no reason to
    exist. Every other key keeps its private half, so a restart can still sign with
    it and verify what it signed; with ``wrap`` that half is sealed (``keywrap``)."""
    sealed: JSON | None = None
    if key.status in ENDED or not key.has_private:
        jwk = key.public_jwk()
    elif wrap is not None:
        jwk = key.public_jwk()
        sealed = wrap.seal(key.private_jwk(), aad=_aad(key.kid, key.alg))
    else:
        jwk = key.private_jwk()
    record: JSON = {
        "kid": key.kid,
        "alg": key.alg,
        "status": key.status,
        "created_at": key.created_at,
        "activate_at": key.activate_at,
        "not_after": key.not_after,
        "retire_at": key.retire_at,
        "revoked_at": key.revoked_at,
        "jwk": jwk,
    }
    if sealed is not None:
        record["sealed"] = sealed
    return record


def _never(message: bytes, signature: bytes) -> bool:
    return False


def _optional_time(value: JSON, name: str) -> float | None:
    raw = value.get(name)
    return None if raw is None else float(raw)


def from_record(value: JSON, wrap: KeyWrap | None = None, *,
                public_only: bool = False) -> SigningKey:
    """The key a record holds. A sealed private half is opened with ``wrap``, or left
    out with ``public_only`` (listing, publishing), else refused: a service without its
    KEK must not quietly carry on without its signing keys."""
    status = value.get("status")
    if status not in (ACTIVE, VERIFY_ONLY, RETIRED, REVOKED):
        raise UnusableKey(f"stored key has an unknown status {status!r}")
    created_at = float(value.get("created_at") or 0.0)
    jwk = value.get("jwk")
    sealed = value.get("sealed")
    if status not in ENDED and isinstance(sealed, dict) and not public_only:
        if wrap is None:
            raise UnusableKey("the stored signing keys are encrypted; set "
                              "AUTHSTATE_KEY_ENCRYPTION_KEY (or _FILE)")
        jwk = wrap.open(sealed, aad=_aad(value.get("kid"), value.get("alg")))
    if jwk is None:
        key = SigningKey(kid=str(value["kid"]), alg=algorithm(value["alg"]).name,
                         verify_signature=_never, status=status, created_at=created_at)
    else:
        key = SigningKey.from_jwk(jwk, alg=value["alg"], kid=value["kid"],
                                  status=status, created_at=created_at)
    key = replace(
        key,
        activate_at=_optional_time(value, "activate_at"),
        not_after=_optional_time(value, "not_after"),
        retire_at=_optional_time(value, "retire_at"),
        revoked_at=_optional_time(value, "revoked_at"),
    )
    return _public_half(key, status=status, revoked_at=key.revoked_at) \
        if status in ENDED else key


def _record_expiry(key: SigningKey, now: float) -> float | None:
    return now + RETIRED_KEEP if key.status in ENDED else None


def _fingerprint(key: SigningKey) -> tuple[Any, ...]:
    return (key.kid, key.status, key.activate_at, key.not_after, key.retire_at)


async def bump_version(store: Store) -> int:
    """Record that the stored key set changed; the new version. Every writer of a key
    calls it after writing, so a reader that polls the version never misses a change."""
    return await store.incr(VERSION_KIND, VERSION_KEY)


async def stored_version(store: Store) -> int | None:
    """The key set's version as stored, or None when there is no version record (a
    store from before versions, or one that lost its data)."""
    record = await store.get(VERSION_KIND, VERSION_KEY)
    return None if record is None else int(record.value["n"])


async def _put(store: Store, key: SigningKey, now: float, wrap: KeyWrap | None) -> None:
    await store.put(KIND, key.kid, to_record(key, wrap), expires_at=_record_expiry(key, now))


async def save(store: Store, keyset: KeySet, *, now: float = 0.0) -> None:
    """Write every key of the set (insert or replace)."""
    for key in keyset.all():
        await _put(store, key, now, keyset.wrap)
    await bump_version(store)


async def load(
    store: Store, *, max_token_ttl: float = ACCESS_TTL_DEFAULT, leeway: float = LEEWAY_DEFAULT,
    clock: Clock | None = None, wrap: KeyWrap | None = None, public_only: bool = False,
) -> KeySet:
    """The key set as the store holds it (retired and revoked keys included, for
    listing; ``public_only`` for listing and publishing without the KEK)."""
    records = await store.scan(KIND, limit=10_000)
    return KeySet([from_record(r.value, wrap, public_only=public_only) for r in records],
                  max_token_ttl=max_token_ttl, leeway=leeway, clock=clock, wrap=wrap)


async def rewrap(store: Store, wrap: KeyWrap | None, *, clock: Clock,
                 opener: KeyWrap | None = None) -> int:
    """Re-write every stored private key under ``wrap``'s current KEK (None: as plain
    JWKs), opening each with ``opener`` (default ``wrap``). How many were re-written."""
    now = clock.now()
    count = 0
    for record in await store.scan(KIND, limit=10_000):
        key = from_record(record.value, opener or wrap)
        if key.status in ENDED or not key.has_private:
            continue
        await _put(store, key, now, wrap)
        count += 1
    await bump_version(store)
    return count


async def sync(store: Store, keyset: KeySet) -> bool:
    """Reload ``keyset`` in place from the store (another instance or the CLI changed
    it); True when something changed."""
    records = await store.scan(KIND, limit=10_000)
    fresh = [from_record(r.value, keyset.wrap) for r in records]
    if {_fingerprint(k) for k in fresh} == {_fingerprint(k) for k in keyset.all()}:
        return False
    keyset.replace_keys(fresh)
    return True


async def load_or_create(
    store: Store,
    *,
    clock: Clock,
    algorithm: str = DEFAULT_ALGORITHM,
    max_token_ttl: float,
    leeway: float = LEEWAY_DEFAULT,
    audit: AuditLog | None = None,
    wrap: KeyWrap | None = None,
) -> KeySet:
    """The shared key set, creating a signer if the store has none that signs now (a
    first start, or a store that lost its keys).

    Two instances starting at once race on one only-if-absent ``create`` of a genesis
    record; the loser adopts the winner's key, so there is one signer, not two.
    """
    keyset = await load(store, max_token_ttl=max_token_ttl, leeway=leeway, clock=clock,
                        wrap=wrap)
    if keyset.has_signer:
        await retire_expired(store, keyset, clock=clock, audit=audit)
        return keyset
    now = clock.now()
    candidate = SigningKey.generate(algorithm, now=now)
    record = to_record(candidate, wrap)
    won = await store.create(GENESIS_KIND, "genesis", record, expires_at=now + GENESIS_TTL)
    if not won:
        genesis = await store.get(GENESIS_KIND, "genesis")
        if genesis is not None:
            record = genesis.value
    elif audit is not None:
        await audit.record("key_generated", detail={"kid": candidate.kid, "alg": candidate.alg})
    if await store.create(KIND, str(record["kid"]), record):
        await bump_version(store)
    keyset = await load(store, max_token_ttl=max_token_ttl, leeway=leeway, clock=clock,
                        wrap=wrap)
    if not keyset.has_signer:
        raise ConfigurationError("the store holds keys but none can sign; run `authstate "
                                 "keys rotate --now`")
    return keyset


async def rotate(
    store: Store,
    keyset: KeySet,
    *,
    clock: Clock,
    new_key: SigningKey | None = None,
    algorithm: str | None = None,
    prepublish: float = 0.0,
    audit: AuditLog | None = None,
) -> RotationResult:
    """Rotate and persist (see ``KeySet.rotate``): the new key is written first, then
    the old signers' end times, then the version, so a reader in between sees two
    signers (the newer wins) rather than none."""
    await sync(store, keyset)  # rotate what the store holds, not a stale copy
    now = clock.now()
    retired = await retire_expired(store, keyset, clock=clock, audit=audit, bump=False)
    result = keyset.rotate(new_key, now=now, alg=algorithm, prepublish=prepublish)
    await _put(store, result.signer, now, keyset.wrap)
    for key in result.demoted:
        await _put(store, key, now, keyset.wrap)
    await bump_version(store)
    if audit is not None:
        await audit.record("key_rotated", detail={
            "kid": result.signer.kid, "alg": result.signer.alg,
            "demoted": [k.kid for k in result.demoted],
            "activate_at": result.signer.activate_at,
        })
    return RotationResult(result.signer, result.demoted, tuple(retired))


@dataclass(frozen=True, slots=True)
class Revocation:
    """What ``revoke`` did: the revoked key, and the key that signs in its place when
    the revoked one was signing (promoted from published, or made at once)."""

    revoked: SigningKey
    replacement: SigningKey | None


async def revoke(
    store: Store,
    keyset: KeySet,
    kid: str,
    *,
    clock: Clock,
    audit: AuditLog | None = None,
) -> Revocation:
    """Revoke ``kid`` at once: every token it signed is refused from now on.

    Revoking the key that signs now never leaves the service without a signer: a
    published key waiting for its turn signs at once, else a new key of the same
    algorithm is made and signs at once (verifiers whose cached JWKS lacks it refetch
    on the unknown kid). ``InvalidInput`` for a kid the store does not hold.
    """
    await sync(store, keyset)
    now = clock.now()
    target = next((k for k in keyset.all() if k.kid == kid), None)
    if target is None:
        raise InvalidInput(f"no key with kid {kid[:KID_MAX]!r}")
    was_signing = target.signs_at(now)
    revoked = keyset.revoke(kid, now=now)
    await _put(store, revoked, now, keyset.wrap)
    replacement: SigningKey | None = None
    if was_signing and not keyset.has_signer:
        waiting = [k for k in keyset if k.create_signature is not None
                   and k.state(now) == "published"]
        if waiting:
            newest = max(waiting, key=lambda k: (k.activation, k.kid))
            replacement = replace(newest, activate_at=now)
            keyset.replace_keys([*(k for k in keyset.all() if k.kid != newest.kid),
                                 replacement])
            await _put(store, replacement, now, keyset.wrap)
        else:
            made = keyset.rotate(now=now, alg=target.alg)
            replacement = made.signer
            for key in (made.signer, *made.demoted):
                await _put(store, key, now, keyset.wrap)
    await bump_version(store)
    if audit is not None:
        await audit.record("key_revoked", detail={
            "kid": kid, "alg": target.alg,
            "replacement": replacement.kid if replacement is not None else None,
        })
    return Revocation(revoked, replacement)


async def retire_expired(
    store: Store, keyset: KeySet, *, clock: Clock, audit: AuditLog | None = None,
    bump: bool = True,
) -> list[SigningKey]:
    """Retire due keys in the set and the store; the retired keys, to announce.

    Every instance runs this from its poll, so the store is written only when its
    record is not retired yet: the first instance to see the time come does it."""
    now = clock.now()
    retired = keyset.retire_expired(now)
    wrote = False
    for key in retired:
        stored = await store.get(KIND, key.kid)
        if stored is not None and stored.value.get("status") in ENDED:
            continue
        await _put(store, key, now, keyset.wrap)
        wrote = True
        if audit is not None:
            await audit.record("key_retired", detail={"kid": key.kid, "alg": key.alg})
    if wrote and bump:
        await bump_version(store)
    return retired


async def drop_private_halves(store: Store, keyset: KeySet, *, clock: Clock) -> bool:
    """Keep only the public half of asymmetric keys that stopped signing: they verify
    until they retire, but their private half has no use left (HMAC keys verify with
    their secret and keep it). Done a leeway after ``not_after``, so an instance whose
    clock runs a little behind has stopped signing with the key too. True when it wrote.
    """
    now = clock.now()
    due = [k for k in keyset.all()
           if k.status in (ACTIVE, VERIFY_ONLY) and k.private_key is not None
           and k.not_after is not None and k.not_after + keyset.leeway <= now]
    if not due:
        return False
    public = []
    for key in due:
        half = SigningKey.from_jwk(key.public_jwk() or {}, alg=key.alg, kid=key.kid,
                                   status=VERIFY_ONLY, created_at=key.created_at)
        public.append(replace(half, activate_at=key.activate_at, not_after=key.not_after,
                              retire_at=key.retire_at))
    done = {k.kid for k in public}
    keyset.replace_keys([*(k for k in keyset.all() if k.kid not in done), *public])
    wrote = False
    for key in public:
        stored = await store.get(KIND, key.kid)
        jwk = stored.value.get("jwk") if stored is not None else None
        private = (isinstance(jwk, dict) and "d" in jwk) or (
            stored is not None and "sealed" in stored.value)
        if stored is None or not private:
            continue
        await _put(store, key, now, keyset.wrap)
        wrote = True
    if wrote:
        await bump_version(store)
    return wrote


def _lock() -> asyncio.Lock:
    # asyncio is imported here, not at the top: a verify-only process imports this module
    # for ``KeySet`` alone, never runs a watcher, and asyncio is about 30 ms of its cold
    # start (``python -X importtime``, this machine).
    import asyncio

    return asyncio.Lock()


class KeyWatcher:
    """Keeps one instance's key set in step with the store, by polling its version.

    ``poll`` is one cheap read of the version record; only when it moved is the key set
    reloaded. It is the whole mechanism on SQLite (no bus) and the backstop behind the
    bus elsewhere. A version that went backwards, a version record that vanished, or a
    set that can no longer sign means the store lost the keys (a Redis without
    persistence restarted): the set is reloaded, and a new signer made if none is left,
    rather than signing on with a key the store no longer holds.
    """

    def __init__(
        self,
        store: Store,
        keyset: KeySet,
        *,
        clock: Clock,
        algorithm: str = DEFAULT_ALGORITHM,
        audit: AuditLog | None = None,
    ) -> None:
        self.store = store
        self.keyset = keyset
        self.clock = clock
        self.algorithm = algorithm
        self.audit = audit
        self.seen: int | None = None
        self.reloads = 0
        # One reload at a time, and none during a local change: an install always comes
        # from a read that started after the previous install, so a slow read can never
        # put back a key set older than one already in place (a revoked key, say).
        self.lock: asyncio.Lock = _lock()

    async def sync(self) -> bool:
        """Reload from the store now (a bus event or a resync asked); True on change."""
        async with self.lock:
            return await sync(self.store, self.keyset)

    async def start(self) -> None:
        """Load (or create) the set and note the version it was loaded at."""
        version = await stored_version(self.store)
        if version is None:
            version = await bump_version(self.store)
        loaded = await load_or_create(
            self.store, clock=self.clock, algorithm=self.algorithm,
            max_token_ttl=self.keyset.max_token_ttl, leeway=self.keyset.leeway,
            audit=self.audit, wrap=self.keyset.wrap,
        )
        self.keyset.replace_keys(loaded.all())
        self.seen = version

    async def poll(self) -> bool:
        """One step: reload when the stored version moved (or the keys were lost), then
        retire what is due. True when the key set changed."""
        async with self.lock:
            return await self._poll()

    async def _poll(self) -> bool:
        version = await stored_version(self.store)
        lost = self.seen is not None and (version is None or version < self.seen)
        if lost:
            logger.warning(
                "the store lost the key set (version %s, was %s): reloading; tokens "
                "signed by lost keys will be refused", version, self.seen,
            )
        changed = False
        if version != self.seen or not self.keyset.has_signer:
            before = self.keyset.version
            if lost or not self.keyset.has_signer:
                await self.start()
            else:
                await sync(self.store, self.keyset)
                self.seen = version
            changed = self.keyset.version != before
            self.reloads += 1
        retired = await retire_expired(self.store, self.keyset, clock=self.clock,
                                       audit=self.audit)
        halved = await drop_private_halves(self.store, self.keyset, clock=self.clock)
        return changed or bool(retired) or halved
