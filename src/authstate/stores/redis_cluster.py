"""The Redis store on a Redis Cluster: every script touches one key, so one hash slot.

Same records, same encoding as ``stores/redis.py`` (a HASH per record, a SET per user and
kind as the index, a STREAM for audit). What differs is that a cluster refuses a script
whose keys live in different slots, or which computes key names inside. A record's key
(``NS:r:KIND:KEY``) is named only by the record itself, and the index of its owner
(``NS:u:KIND:{USER}``, the braces literal: a hash tag, so all of a user's indexes share
a slot) lives wherever the user's name hashes to: no single slot can hold both for every read
path, since ``get(kind, key)`` must find a record without knowing its owner. Hash tags
joining an old and a new session key, or a refresh token and its successor, would need
those random keys to carry a common tag, which the core does not ask of its keys.

So each operation spanning several keys here is a short sequence of one-key atomic
steps, ordered so that an interruption at any point (a killed primary, a cut
connection) leaves only harmless garbage and never an unindexed live record, a lost
session, or a token that two callers both spent:

- write: index the member first, then write the record. A failure in between leaves an
  index member with no record, dropped when the index is next read.
- rename: snapshot the old record, index and write the new one, then delete the old one
  only if it is still exactly the snapshot (compare-and-delete). The loser of a race, or
  a rename that saw the old record change underneath, deletes its copy and tries again
  or reports nothing to rename. Until the compare-and-delete the old ID still works;
  after it only the new one does. An interruption leaves a copy under a key nobody
  knows (its ID was never sent), which expires.
- spend: index and write the successor, then mark the old token spent (one script
  that checks and marks). Losing that check deletes the successor, whose token was
  never handed out.
- delete_by_user: read the index, delete each member owned by the user (one script per
  record), and repeat while new members appear: a rename or spend indexes its new key
  before it retires the old one, so a record moved during the sweep is found on the
  next round.

Index TTLs are extended after a patch moves a record's expiry (the owner is known only
then); if that second step fails the caller sees ``StoreUnavailable`` and the next touch
extends it again. Counters, patch, delete and create were single-key already; merge is a
snapshot and a compare-and-set on its one key (no ``WATCH``: see ``merge``).

Reads (``get``, the per-request session read) are gathered per event-loop turn by
``RedisStore.get`` as on one server; here they travel as one pipeline per node (``_fetch``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from authstate.clock import Clock
from authstate.errors import InvalidStoreURL, MissingDependencyError, StoreUnavailable
from authstate.stores.base import JSON, Record, check_kind_key, merge_object
from authstate.stores.base import dumps as _dumps
from authstate.stores.base import loads as _loads
from authstate.stores.redis import (
    _DOWN,
    _LUA_PRELUDE,
    AUDIT_MAX,
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    HEALTH_CHECK_INTERVAL,
    SCAN_COUNT,
    Read,
    RedisStore,
    _dumps_user,
    _fields,
    _record,
    field_name,
    glob_escape,
    settle,
)
from authstate.stores.redis_urls import parse

try:
    from redis import exceptions as redis_errors
    from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
    from redis.exceptions import RedisClusterException
except ImportError as missing:  # pragma: no cover - redis is a core dependency today
    raise MissingDependencyError("redis", "redis") from missing

DELETE_ROUNDS = 8  # delete_by_user re-reads the index while records move under it
RENAME_TRIES = 4  # a rename retried when the record changed between its steps

# KEYS[1] index; ARGV: member, ttl ('' for none)
_C_INDEX = "index_add(KEYS[1], ARGV[1], ARGV[2])"

# KEYS[1] record; ARGV: now, e, u ('' for none), ttl, only if absent ('1'/'0'), fields...
_C_WRITE = """
if ARGV[5] == '1' and live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' and tonumber(ARGV[4]) <= 0 then return 1 end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], E, ARGV[2], U, ARGV[3])
else
  redis.call('HSET', KEYS[1], E, ARGV[2])
end
hset_from(KEYS[1], 6, #ARGV)
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# KEYS[1] record; ARGV: now, e ('-' keeps it), ttl, fields...
_C_PATCH = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
hset_from(KEYS[1], 4, #ARGV)
if ARGV[2] ~= '-' then
  redis.call('HSET', KEYS[1], E, ARGV[2])
  if tonumber(ARGV[3]) <= 0 then
    local gone = redis.call('HGETALL', KEYS[1])
    redis.call('DEL', KEYS[1])
    return gone
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] record; ARGV: now. The live record removed, or nil.
_C_DELETE = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return false end
local alive = live(KEYS[1], tonumber(ARGV[1]))
redis.call('DEL', KEYS[1])
if alive then return rec end
return false
"""

# KEYS[1] record; ARGV: now, JSON user. nil when not the user's (a stale index member),
# else {1, record} when a live record was removed or {0} when it had expired.
_C_DELETE_OWNED = """
if redis.call('HGET', KEYS[1], U) ~= ARGV[2] then return false end
local alive = live(KEYS[1], tonumber(ARGV[1]))
local rec = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
if alive then return {1, rec} end
return {0}
"""

# KEYS[1] record; ARGV: now. The live record as stored, or nil.
_C_SNAPSHOT = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] record; ARGV: the snapshot, joined. 1 when it was unchanged and is now gone.
_C_DELETE_IF_SAME = """
if table.concat(redis.call('HGETALL', KEYS[1])) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] record; ARGV: the snapshot joined, field, value. 1 when the record was unchanged
# and the field is now set.
_C_SET_IF_SAME = """
if table.concat(redis.call('HGETALL', KEYS[1])) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# KEYS[1] record to spend; ARGV: now, spent expiry (E value or ''), its TTL in ms (or ''),
# spend fields... The spent record's expiry only ever shortens (the reuse window).
_C_SPEND = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
local before = redis.call('HGETALL', KEYS[1])
local spent = redis.call('HGET', KEYS[1], SPENT)
if spent and spent ~= 'null' then return {before, 0} end
hset_from(KEYS[1], 4, #ARGV)
if ARGV[2] ~= '' then
  local e = redis.call('HGET', KEYS[1], E)
  if e == 'null' or tonumber(ARGV[2]) < tonumber(e) then
    redis.call('HSET', KEYS[1], E, ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
end
return {before, 1}
"""


class RedisClusterStore(RedisStore):
    """The ``Store`` protocol on a Redis Cluster; see the module docstring."""

    url_scheme = "redis"

    def __init__(
        self,
        client: RedisCluster,
        *,
        url: str,
        clock: Clock | None = None,
        namespace: str = "authstate",
        audit_max: int = AUDIT_MAX,
    ) -> None:
        self._cluster = client
        self._setup(client, url=url, clock=clock, namespace=namespace, audit_max=audit_max)
        register = client.register_script
        self._c_index = register(_LUA_PRELUDE + _C_INDEX)
        self._c_write = register(_LUA_PRELUDE + _C_WRITE)
        self._c_patch = register(_LUA_PRELUDE + _C_PATCH)
        self._c_delete = register(_LUA_PRELUDE + _C_DELETE)
        self._c_delete_owned = register(_LUA_PRELUDE + _C_DELETE_OWNED)
        self._c_snapshot = register(_LUA_PRELUDE + _C_SNAPSHOT)
        self._c_delete_if_same = register(_LUA_PRELUDE + _C_DELETE_IF_SAME)
        self._c_spend = register(_LUA_PRELUDE + _C_SPEND)
        self._c_set_if_same = register(_LUA_PRELUDE + _C_SET_IF_SAME)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        namespace: str = "authstate",
        audit_max: int = AUDIT_MAX,
    ) -> RedisClusterStore:
        """Connect to the cluster through any of the seed nodes in ``url`` and check it
        answers, so a wrong URL or a cluster that is down stops start-up."""
        client = cluster_client(url)
        store = cls(client, url=url, clock=clock, namespace=namespace, audit_max=audit_max)
        try:
            await store.ping()
        except StoreUnavailable:
            await store.close()
            raise
        except RedisClusterException as error:  # no seed answers, or not a cluster node
            await store.close()
            raise store._unavailable("connecting", error) from None
        return store

    def _index_key(self, kind: str, user_id: str) -> str:
        return f"{self._ns}:u:{kind}:{{{user_id}}}"

    async def _call(self, what: str, script: Any, key: str, args: Sequence[Any]) -> Any:
        try:
            return await script(keys=[key], args=list(args))
        except _DOWN as error:
            raise self._unavailable(what, error) from None

    async def _index_add(self, kind: str, user_id: str, member: str, ttl: str) -> None:
        await self._call(
            f"index {kind}", self._c_index, self._index_key(kind, user_id), [member, ttl]
        )

    async def _fetch(self, reads: list[Read]) -> None:
        """This turn's reads (``RedisStore.get`` gathers them), grouped by the node that
        serves each key's slot in the client's slot map: one write and one round trip per
        node, the nodes in parallel. A read this fast path cannot answer is read again on
        its own through the cluster client's command path, which follows MOVED and ASK,
        waits out TRYAGAIN, and on a dead or silent node refreshes the slot map and
        retries: so the map this path routes by heals itself, and what the client cannot
        answer either reaches the reader as the client's error (``StoreUnavailable`` in
        ``get``). Those are: an error reply (a slot moved, migrating, or without a
        primary; a wrong type is raised again by the client as itself), a node whose
        batch failed (connection refused or dropped, timeout, no free connection), and a
        key whose slot the map does not cover."""
        groups: dict[str, tuple[ClusterNode, list[Read]]] = {}
        again: list[Read] = []
        for read in reads:
            try:
                node = self._cluster.get_node_from_key(read[0])
            except redis_errors.SlotNotCoveredError:
                again.append(read)
                continue
            assert node is not None  # only a replica may be missing
            groups.setdefault(node.name, (node, []))[1].append(read)
        batches = [self._fetch_from(node, batch) for node, batch in groups.values()]
        for missed in await asyncio.gather(*batches):
            again.extend(missed)
        if again:
            await asyncio.gather(*(self._read_alone(name, future) for name, future in again))

    async def _fetch_from(self, node: ClusterNode, reads: list[Read]) -> list[Read]:
        """One node's batch, through the node's own pipeline (one of its connections,
        one write); the reads it left unanswered."""
        commands = [PipelineCommand(i, "HGETALL", name) for i, (name, _) in enumerate(reads)]
        try:
            await node.execute_pipeline(commands)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError):
            return reads  # not sent, or no free connection (MaxConnectionsError)
        missed: list[Read] = []
        for read, command in zip(reads, commands, strict=True):
            if isinstance(command.result, Exception):
                missed.append(read)
            else:
                settle(read[1], command.result)
        return missed

    async def _read_alone(self, name: str, future: asyncio.Future[Any]) -> None:
        try:
            reply = await self._cluster.execute_command("HGETALL", name)
        except redis_errors.RedisError as error:  # the reader's to raise, as unbatched
            reply = error
        except Exception as error:
            # redis-py itself failing mid-failover (seen on 8.1: a connection closed under
            # a concurrent connect raises AttributeError): the node is not answering,
            # which the reader must see as an outage (503), not as a bug (500)
            reply = redis_errors.ConnectionError(f"client error: {type(error).__name__}")
        settle(future, reply)

    async def _write(
        self,
        script: Any,
        what: str,
        kind: str,
        key: str,
        value: JSON,
        expires_at: float | None,
        user_id: str | None,
    ) -> Any:
        check_kind_key(kind, key)
        now = self._clock.now()
        e, ttl = self._expiry(expires_at, now)
        if user_id is not None and not (ttl and int(ttl) <= 0):
            await self._index_add(kind, user_id, key, ttl)
        owner = "" if user_id is None else _dumps_user(user_id)
        only_if_absent = "1" if what == "create" else "0"
        args = [repr(now), e, owner, ttl, only_if_absent, *_fields(value)]
        return await self._call(f"{what} {kind}", self._c_write, self._prefix(kind) + key, args)

    async def patch(
        self, kind: str, key: str, fields: JSON, *, expires_at: float | None = None
    ) -> Record | None:
        now = self._clock.now()
        e, ttl = ("-", "") if expires_at is None else self._expiry(expires_at, now)
        flat = await self._call(
            f"patch {kind}", self._c_patch, self._prefix(kind) + key,
            [repr(now), e, ttl, *_fields(fields)],
        )
        if flat is None:
            return None
        record = _record(key, flat)
        if e != "-" and record.user_id is not None and int(ttl) > 0:
            await self._index_add(kind, record.user_id, key, ttl)
        return record

    async def merge(
        self, kind: str, key: str, field: str, fields: JSON, *, max_bytes: int
    ) -> Record | None:
        """Check-and-set without ``WATCH``/``MULTI``: redis-py's asyncio cluster client
        refuses transactions before 6.2 (``transaction is deprecated in cluster mode``),
        and pyproject allows 6.0. Snapshot the record, merge in Python (the one
        ``merge_object`` of every backend; not in Lua, whose ``cjson`` would mangle the
        caller's data), then set the field only if the record is still exactly the
        snapshot; a concurrent write makes that fail and the merge runs again on what the
        write left, so no update is lost."""
        name = self._prefix(kind) + key
        while True:
            snapshot = await self._call(
                f"merge {kind}", self._c_snapshot, name, [repr(self._clock.now())]
            )
            if snapshot is None:
                return None
            record = _record(key, snapshot)
            merged = merge_object(record.value.get(field), fields, max_bytes)
            done = await self._call(
                f"merge {kind}", self._c_set_if_same, name,
                [b"".join(snapshot), field_name(field), _dumps(merged)],
            )
            if done:
                return record._replace(value={**record.value, field: merged})

    async def delete(self, kind: str, key: str) -> Record | None:
        now = self._clock.now()
        flat = await self._call(
            f"delete {kind}", self._c_delete, self._prefix(kind) + key, [repr(now)]
        )
        if flat is None:
            return None
        record = _record(key, flat)
        if record.user_id is not None:
            await self._drop_members(kind, record.user_id, [key])
        return record

    async def _drop_members(self, kind: str, user_id: str, members: Sequence[str]) -> None:
        """Best effort: a member left behind is dropped when the index is next read."""
        if members:
            with contextlib.suppress(*_DOWN):
                await self._cluster.srem(self._index_key(kind, user_id), *members)

    async def rename(
        self,
        kind: str,
        old_key: str,
        new_key: str,
        *,
        fields: JSON | None = None,
        expires_at: float | None = None,
    ) -> Record | None:
        check_kind_key(kind, new_key)
        if old_key == new_key:
            return await self.patch(kind, old_key, fields or {}, expires_at=expires_at)
        prefix = self._prefix(kind)
        merged = _loads(_dumps(fields or {}))
        for _ in range(RENAME_TRIES):
            now = self._clock.now()
            snapshot = await self._call(
                f"rename {kind}", self._c_snapshot, prefix + old_key, [repr(now)]
            )
            if snapshot is None:
                return None
            old = _record(old_key, snapshot)
            value = {**old.value, **merged}
            expiry = old.expires_at if expires_at is None else expires_at
            _, ttl = self._expiry(expiry, now)
            if ttl and int(ttl) <= 0:
                gone = await self._call(
                    f"rename {kind}", self._c_delete_if_same, prefix + old_key,
                    [b"".join(snapshot)],
                )
                if gone:
                    return Record(new_key, value, expiry, old.user_id)
                continue
            await self._write(self._c_write, "put", kind, new_key, value, expiry, old.user_id)
            moved = await self._call(
                f"rename {kind}", self._c_delete_if_same, prefix + old_key,
                [b"".join(snapshot)],
            )
            if moved:
                if old.user_id is not None:
                    await self._drop_members(kind, old.user_id, [old_key])
                return Record(new_key, value, expiry, old.user_id)
            await self._call(f"rename {kind}", self._c_delete, prefix + new_key, [repr(now)])
        raise StoreUnavailable(
            f"redis store {self._url} unavailable: rename {kind} kept racing with writers"
        )

    async def _members(self, kind: str, user_id: str) -> list[str]:
        try:
            members = await self._cluster.smembers(self._index_key(kind, user_id))
        except _DOWN as error:
            raise self._unavailable(f"index {kind}", error) from None
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def list_by_user(self, kind: str, user_id: str) -> list[Record]:
        members = await self._members(kind, user_id)
        prefix = self._prefix(kind)
        try:
            flats = await asyncio.gather(
                *(self._cluster.execute_command("HGETALL", prefix + m) for m in members)
            )
        except _DOWN as error:
            raise self._unavailable(f"list_by_user {kind}", error) from None
        found: list[Record] = []
        stale: list[str] = []
        for member, flat in zip(members, flats, strict=True):
            if not flat:
                stale.append(member)
                continue
            record = _record(member, flat)
            if record.user_id != user_id:
                stale.append(member)
            elif record.expires_at is None or record.expires_at > self._clock.now():
                found.append(record)
        await self._drop_members(kind, user_id, stale)
        return found

    async def delete_by_user(
        self, kind: str, user_id: str, *, keep: str | None = None
    ) -> list[Record]:
        removed: list[Record] = []
        seen: set[str] = set() if keep is None else {keep}
        for _ in range(DELETE_ROUNDS):
            members = [m for m in await self._members(kind, user_id) if m not in seen]
            if not members:
                break
            seen.update(members)
            removed.extend(await self._delete_owned(kind, user_id, members))
        return removed

    async def _delete_owned(
        self, kind: str, user_id: str, members: Sequence[str]
    ) -> list[Record]:
        """Delete the members' records owned by ``owner``, then drop them from the index.

        A member whose record was not there may be the new key of a move that indexed it
        but had not yet written it; if that move then succeeds, it did so before this
        round deleted its old record, so its new record exists once the round is over.
        Those members are tried once more before leaving the index: dropping them at once
        would leave such a record alive and unindexed (found by
        ``test_delete_by_user_catches_records_moved_meanwhile``)."""
        prefix, owner = self._prefix(kind), _dumps_user(user_id)
        removed: list[Record] = []
        pending = list(members)
        for _ in range(2):
            now = repr(self._clock.now())
            try:
                results = await asyncio.gather(
                    *(self._c_delete_owned(keys=[prefix + m], args=[now, owner]) for m in pending)
                )
            except _DOWN as error:
                raise self._unavailable(f"delete_by_user {kind}", error) from None
            for member, result in zip(pending, results, strict=True):
                if result is not None and int(result[0]) == 1:
                    removed.append(_record(member, result[1]))
            pending = [m for m, result in zip(pending, results, strict=True) if result is None]
            if not pending:
                break
        await self._drop_members(kind, user_id, members)
        return removed

    async def scan(self, kind: str, *, prefix: str = "", limit: int = 1000) -> list[Record]:
        record_prefix = self._prefix(kind)
        skip = len(record_prefix)
        pattern = record_prefix + glob_escape(prefix) + "*"
        found: list[Record] = []
        try:
            names: list[bytes] = []
            async for name in self._cluster.scan_iter(match=pattern, count=SCAN_COUNT):
                names.append(name)
                if len(names) >= SCAN_COUNT:
                    found.extend(await self._read_all(names, skip))
                    names = []
                    if len(found) >= limit:
                        break
            found.extend(await self._read_all(names, skip))
        except _DOWN as error:
            raise self._unavailable(f"scan {kind}", error) from None
        found.sort(key=lambda r: r.key)
        return found[:limit]

    async def _read_all(self, names: Sequence[bytes], skip: int) -> list[Record]:
        flats = await asyncio.gather(
            *(self._cluster.execute_command("HGETALL", name) for name in names)
        )
        return [
            record
            for name, flat in zip(names, flats, strict=True)
            if flat and (record := self._live(name[skip:].decode(), flat)) is not None
        ]

    async def spend(
        self,
        kind: str,
        key: str,
        *,
        fields: JSON,
        new_key: str,
        new_value: JSON,
        new_expires_at: float | None,
        user_id: str | None = None,
        spent_expires_at: float | None = None,
    ) -> tuple[Record | None, bool]:
        check_kind_key(kind, new_key)
        prefix = self._prefix(kind)
        spent_fields = _fields(fields)
        now = self._clock.now()
        spent_expiry = (
            ("", "") if spent_expires_at is None else self._expiry(spent_expires_at, now)
        )
        await self._write(
            self._c_write, "put", kind, new_key, new_value, new_expires_at, user_id
        )
        result = await self._call(
            f"spend {kind}", self._c_spend, prefix + key,
            [repr(now), *spent_expiry, *spent_fields],
        )
        rotated = result is not None and int(result[1]) == 1
        if not rotated:
            await self._call(
                f"spend {kind}", self._c_delete, prefix + new_key, [repr(self._clock.now())]
            )
        if result is None:
            return None, False
        return _record(key, result[0]), rotated

    async def ping(self) -> None:
        """Every primary must answer: a slot without a primary fails requests."""
        try:
            await self._cluster.ping(target_nodes=RedisCluster.PRIMARIES)
        except _DOWN as error:
            raise self._unavailable("ping", error) from None


def cluster_client(url: str, **options: Any) -> RedisCluster:
    """A ``RedisCluster`` client for a ``redis+cluster://`` URL, not yet connected."""
    parsed = parse(url)
    if parsed.service is not None:
        raise InvalidStoreURL("a sentinel URL is not a cluster URL")
    settings: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "protocol": 2,
        "ssl": parsed.tls,
        "username": parsed.username,
        "password": parsed.password,
    }
    settings.update(options)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts], **settings
    )
