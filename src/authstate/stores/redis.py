"""The Redis store: each record a hash with its own TTL, atomic operations as Lua scripts.

Layout under the namespace ``ns`` (the Redis key prefix):

- ``{ns}:r:{kind}:{key}`` a HASH per record. Every top-level field of the value is one
  hash field holding its JSON-encoded value, which makes ``patch`` an exact ``HSET``
  merge. The field is named ``,"name":`` (its JSON-encoded name between a comma and a
  colon) so that the ``HGETALL`` reply, joined as it comes, is the record's JSON object
  and a read costs one parse. The two meta fields are named the same way after reserved
  names that a value may not use: ``"\x00e"`` (the absolute expiry, a float or null) and
  ``"\x00u"`` (the owning user, when there is one).
- ``{ns}:u:{kind}:{user}`` a SET of the user's record keys, so ``list_by_user`` costs that
  user's records. Members whose record expired or moved are dropped lazily when the set
  is read; the set's own TTL is kept at least as long as its longest-lived member.
- ``{ns}:audit`` a STREAM of audit events. A stream cannot edit an entry, so
  ``scrub_audit`` (a deleted user's IP and agent) rewrites the tail from that user's
  oldest event, ids kept, in one script (``_SCRUB_AUDIT``).

Expiry is enforced twice, as the protocol asks: a PEXPIRE relative to the store's clock
(so Redis reclaims the space and a ``sweep`` has nothing to do), and the expiry field
compared with the store's clock on every read (so an injected clock is obeyed). Scripts
receive ``now`` from that clock instead of reading Redis ``TIME`` for the same reason.

Scripts compute a few key names inside (index sets, records listed in an index), which a
single Redis or a primary with replicas (``redis+sentinel://``, ``stores/redis_sentinel.py``)
accepts and which keeps each operation one atomic script. A Redis Cluster refuses that;
``stores/redis_cluster.py`` keeps this encoding with one-key scripts instead. A new
operation that touches only its record (``KEYS[1]``) works on both unchanged.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from authstate.clock import Clock, SystemClock
from authstate.errors import InvalidInput, InvalidStoreURL, MissingDependencyError, StoreUnavailable
from authstate.stores.base import (
    JSON,
    AuditRow,
    Record,
    check_kind_key,
    check_limit,
    merge_object,
    scrub_event,
)
from authstate.stores.base import dumps as _dumps
from authstate.stores.base import loads as _loads

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
except ImportError as missing:  # pragma: no cover - redis is a core dependency today
    raise MissingDependencyError("redis", "redis") from missing

CONNECT_TIMEOUT = 0.5  # a dead or unreachable server must fail a request fast, not hang it
COMMAND_TIMEOUT = 1.5
HEALTH_CHECK_INTERVAL = 30  # PING a connection idle this long before reusing it
AUDIT_MAX = 1_000_000  # safety cap if nobody prunes; pruning by age is the real policy
SCAN_COUNT = 1000

# Errors that mean "the server cannot be reached or cannot take writes right now". Any
# other RedisError is a bug (a wrong command, a wrong type) and surfaces as itself.
# A Redis Cluster adds its own: a slot whose primary failed and is not yet replaced
# (CLUSTERDOWN, TRYAGAIN, MASTERDOWN, no node known for the slot).
_DOWN: Final = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)
_STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_GLOB = re.compile(r"([*?\[\]\\])")
_dumps_user = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

META_EXPIRES = "\x00e"
META_USER = "\x00u"
_RESERVED = frozenset((META_EXPIRES, META_USER))


def field_name(name: str) -> str:
    """The hash field of a top-level value field: see the module docstring."""
    return "," + _dumps(name) + ":"


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_LUA_PRELUDE = f"""
local E = {_lua_string(field_name(META_EXPIRES))}
local U = {_lua_string(field_name(META_USER))}
local N = {_lua_string(field_name("n"))}
local SPENT = {_lua_string(field_name("spent_at"))}
""" + """
local function live(rkey, now)
  local e = redis.call('HGET', rkey, E)
  if not e then return false end
  if e ~= 'null' and tonumber(e) <= now then return false end
  return true
end

local function owner(rkey)
  local u = redis.call('HGET', rkey, U)
  if u then return cjson.decode(u) end
  return false
end

local function index_add(idx, member, ttl)
  local t = redis.call('PTTL', idx)
  redis.call('SADD', idx, member)
  if ttl == '' then
    if t >= 0 then redis.call('PERSIST', idx) end
  elseif t == -2 or (t >= 0 and tonumber(ttl) > t) then
    redis.call('PEXPIRE', idx, ttl)
  end
end

local function hset_from(rkey, first, last)
  if last < first then return end
  local cmd = {'HSET', rkey}
  for i = first, last do cmd[#cmd + 1] = ARGV[i] end
  redis.call(unpack(cmd))
end

-- e: JSON expiry; u: JSON owner or ''; ttl: milliseconds or '' for none
local function write(rkey, idxp, member, e, u, ttl, first)
  local old = redis.call('HGET', rkey, U)
  if old and old ~= u then redis.call('SREM', idxp .. cjson.decode(old), member) end
  redis.call('DEL', rkey)
  local uid = false
  if u ~= '' then uid = cjson.decode(u) end
  if ttl ~= '' and tonumber(ttl) <= 0 then
    if uid then redis.call('SREM', idxp .. uid, member) end
    return
  end
  if uid then
    redis.call('HSET', rkey, E, e, U, u)
  else
    redis.call('HSET', rkey, E, e)
  end
  hset_from(rkey, first, #ARGV)
  if ttl ~= '' then redis.call('PEXPIRE', rkey, ttl) end
  if uid then index_add(idxp .. uid, member, ttl) end
end
"""

# KEYS[1] record; ARGV: now, index prefix, member, e, u, ttl, fields...
_PUT = "write(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 7)"

_CREATE = """
if live(KEYS[1], tonumber(ARGV[1])) then return 0 end
write(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 7)
return 1
"""

# KEYS[1] record; ARGV: now, index prefix, member, e ('-' keeps it), ttl, fields...
_PATCH = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
hset_from(KEYS[1], 6, #ARGV)
if ARGV[4] ~= '-' then
  redis.call('HSET', KEYS[1], E, ARGV[4])
  local u = owner(KEYS[1])
  if tonumber(ARGV[5]) <= 0 then
    local gone = redis.call('HGETALL', KEYS[1])
    redis.call('DEL', KEYS[1])
    if u then redis.call('SREM', ARGV[2] .. u, ARGV[3]) end
    return gone
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if u then index_add(ARGV[2] .. u, ARGV[3], ARGV[5]) end
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] old record, KEYS[2] new record;
# ARGV: now, index prefix, old member, new member, e ('-' keeps it), ttl, fields...
_RENAME = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
local idxp = ARGV[2]
local u = owner(KEYS[1])
if KEYS[1] ~= KEYS[2] then
  local prev = owner(KEYS[2])
  if prev then redis.call('SREM', idxp .. prev, ARGV[4]) end
  redis.call('RENAME', KEYS[1], KEYS[2])
  if u then redis.call('SREM', idxp .. u, ARGV[3]) end
end
hset_from(KEYS[2], 7, #ARGV)
local ttl
if ARGV[5] ~= '-' then
  redis.call('HSET', KEYS[2], E, ARGV[5])
  ttl = ARGV[6]
  if tonumber(ttl) <= 0 then
    local gone = redis.call('HGETALL', KEYS[2])
    redis.call('DEL', KEYS[2])
    return gone
  end
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  local p = redis.call('PTTL', KEYS[2])
  if p >= 0 then ttl = tostring(p) else ttl = '' end
end
if u then index_add(idxp .. u, ARGV[4], ttl) end
return redis.call('HGETALL', KEYS[2])
"""

# KEYS[1] record; ARGV: now, index prefix, member
_DELETE = """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return false end
local alive = live(KEYS[1], tonumber(ARGV[1]))
local u = owner(KEYS[1])
redis.call('DEL', KEYS[1])
if u then redis.call('SREM', ARGV[2] .. u, ARGV[3]) end
if alive then return rec end
return false
"""

# KEYS[1] index; ARGV: now, record prefix, JSON user
_LIST = """
local now = tonumber(ARGV[1])
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rkey = ARGV[2] .. m
  if redis.call('HGET', rkey, U) ~= ARGV[3] then
    redis.call('SREM', KEYS[1], m)
  elseif live(rkey, now) then
    out[#out + 1] = m
    out[#out + 1] = redis.call('HGETALL', rkey)
  end
end
return out
"""

# KEYS[1] index; ARGV: now, record prefix, JSON user, member to keep ('' for none)
_DELETE_BY_USER = """
local now = tonumber(ARGV[1])
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[4] then
    local rkey = ARGV[2] .. m
    if redis.call('HGET', rkey, U) == ARGV[3] then
      if live(rkey, now) then
        out[#out + 1] = m
        out[#out + 1] = redis.call('HGETALL', rkey)
      end
      redis.call('DEL', rkey)
    end
    redis.call('SREM', KEYS[1], m)
  end
end
return out
"""

# KEYS[1] counter; ARGV: now, e, ttl
_INCR = """
if live(KEYS[1], tonumber(ARGV[1])) then
  return redis.call('HINCRBY', KEYS[1], N, 1)
end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' and tonumber(ARGV[3]) <= 0 then return 1 end
redis.call('HSET', KEYS[1], E, ARGV[2], N, 1)
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS[1] counter; ARGV: now, e, ttl, limit. false (nil) when the counter is at the limit.
_INCR_BELOW = """
if live(KEYS[1], tonumber(ARGV[1])) then
  if tonumber(redis.call('HGET', KEYS[1], N) or '0') >= tonumber(ARGV[4]) then
    return false
  end
  return redis.call('HINCRBY', KEYS[1], N, 1)
end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' and tonumber(ARGV[3]) <= 0 then return 1 end
redis.call('HSET', KEYS[1], E, ARGV[2], N, 1)
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS[1] counter; ARGV: now. false (nil) when there is no live counter.
_DECR = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
if tonumber(redis.call('HGET', KEYS[1], N) or '0') <= 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], N, -1)
"""

# KEYS[1] spent record, KEYS[2] successor;
# ARGV: now, index prefix, new member, new e, new u, new ttl, spent e ('' keeps the
# expiry unless earlier), spent ttl, n, n spend fields, new fields...
# KEYS[1] the audit stream; ARGV: the oldest id to rewrite, then pairs of (id, new "j").
# A stream cannot edit an entry, and XADD only appends after its top id, so the tail from
# that id on is taken out and put back with the same ids, the given entries' "j"
# replaced: XDEL the tail, XSETID down to the entry before it, XADD each entry with its
# own id, then XSETID back to the stream's own last id, added count and deleted id, so
# ids handed out later (and cursors) go on exactly as before. One script: atomic, so no
# append is lost in between; it costs O(tail) inside Redis (measured in
# ``benchmarks/audit_scrub.py``).
_SCRUB_AUDIT = """
local key = KEYS[1]
local new = {}
for i = 2, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end
local tail = redis.call('XRANGE', key, ARGV[1], '+')
local changed = 0
for _, entry in ipairs(tail) do
  if new[entry[1]] then changed = changed + 1 end
end
if changed == 0 then return 0 end
local info = redis.call('XINFO', 'STREAM', key)
local meta = {}
for i = 1, #info, 2 do meta[info[i]] = info[i + 1] end
for _, entry in ipairs(tail) do redis.call('XDEL', key, entry[1]) end
local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
local floor = top[1] and top[1][1] or '0-0'
redis.call('XSETID', key, floor, 'ENTRIESADDED', meta['entries-added'], 'MAXDELETEDID', floor)
for _, entry in ipairs(tail) do
  local fields = entry[2]
  local replacement = new[entry[1]]
  if replacement then
    for i = 1, #fields, 2 do
      if fields[i] == 'j' then fields[i + 1] = replacement end
    end
  end
  redis.call('XADD', key, entry[1], unpack(fields))
end
redis.call('XSETID', key, meta['last-generated-id'], 'ENTRIESADDED', meta['entries-added'],
  'MAXDELETEDID', meta['max-deleted-entry-id'])
return changed
"""

_SPEND = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
local before = redis.call('HGETALL', KEYS[1])
local spent = redis.call('HGET', KEYS[1], SPENT)
if spent and spent ~= 'null' then return {before, 0} end
local n = tonumber(ARGV[9])
hset_from(KEYS[1], 10, 9 + n)
if ARGV[7] ~= '' then
  local e = redis.call('HGET', KEYS[1], E)
  if e == 'null' or tonumber(ARGV[7]) < tonumber(e) then
    redis.call('HSET', KEYS[1], E, ARGV[7])
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
  end
end
write(KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 10 + n)
return {before, 1}
"""


def _fields(value: Mapping[str, Any]) -> list[str]:
    """A value's top-level fields as flat ``HSET`` arguments."""
    flat: list[str] = []
    for name, item in value.items():
        if not isinstance(name, str):
            raise TypeError("record value keys must be strings")
        if name in _RESERVED:
            raise ValueError(f"record value key {name!r} is reserved by the redis store")
        flat.append(field_name(name))
        flat.append(_dumps(item))
    return flat


def _decode(flat: Sequence[bytes] | dict[bytes, bytes]) -> JSON:
    """A record's ``HGETALL`` reply as one JSON object, meta fields included."""
    if isinstance(flat, dict):  # a RESP3 connection handed in from outside
        flat = [part for pair in flat.items() for part in pair]
    value: JSON = _loads("{" + b"".join(flat).decode()[1:] + "}")
    return value


def _record(key: str, flat: Sequence[bytes]) -> Record:
    """The record as stored, whatever its expiry."""
    value = _decode(flat)
    return Record(key, value, value.pop(META_EXPIRES, None), value.pop(META_USER, None))


def _as_is(response: Any, **options: Any) -> Any:
    return response


def _ttl_ms(expires_at: float, now: float) -> str:
    return str(math.ceil((expires_at - now) * 1000))


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return _GLOB.sub(r"\\\1", text)


Read = tuple[str, asyncio.Future[Any]]  # a record's Redis key, and its reader's answer


def settle(future: asyncio.Future[Any], reply: Any) -> None:
    """Answer a reader, unless its request was cancelled meanwhile."""
    if future.done():
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)


class RedisStore:
    """The ``Store`` protocol on one Redis server, through one connection pool."""

    url_scheme = "redis"

    def __init__(
        self,
        client: Redis,
        *,
        url: str,
        clock: Clock | None = None,
        namespace: str = "authstate",
        audit_max: int = AUDIT_MAX,
    ) -> None:

        # HGETALL replies stay flat lists (RESP2, no dict callback): joined as they
        # come, they are the record's JSON.
        client.connection_pool.connection_kwargs["protocol"] = 2
        self._pool = client.connection_pool
        self._setup(client, url=url, clock=clock, namespace=namespace, audit_max=audit_max)

    def _setup(
        self,
        client: Redis | RedisCluster,
        *,
        url: str,
        clock: Clock | None,
        namespace: str,
        audit_max: int,
    ) -> None:
        """What every Redis deployment shares: the client, names, scripts."""
        from authstate.stores.base import redact_url

        client.set_response_callback("HGETALL", _as_is)
        client.set_response_callback("CONFIG GET", _as_is)
        self._redis = client
        self._clock = clock or SystemClock()
        self._url = redact_url(url)
        self._ns = namespace
        self._audit = f"{namespace}:audit"
        self._audit_max = audit_max
        self._rp: dict[str, str] = {}
        self._reads: list[Read] = []
        self._fetches: set[asyncio.Task[None]] = set()
        register = client.register_script
        self._put = register(_LUA_PRELUDE + _PUT)
        self._create = register(_LUA_PRELUDE + _CREATE)
        self._patch = register(_LUA_PRELUDE + _PATCH)
        self._rename = register(_LUA_PRELUDE + _RENAME)
        self._delete = register(_LUA_PRELUDE + _DELETE)
        self._list = register(_LUA_PRELUDE + _LIST)
        self._delete_by_user = register(_LUA_PRELUDE + _DELETE_BY_USER)
        self._incr = register(_LUA_PRELUDE + _INCR)
        self._incr_below = register(_LUA_PRELUDE + _INCR_BELOW)
        self._decr = register(_LUA_PRELUDE + _DECR)
        self._spend = register(_LUA_PRELUDE + _SPEND)
        self._scrub_audit = register(_SCRUB_AUDIT)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        namespace: str = "authstate",
        audit_max: int = AUDIT_MAX,
    ) -> RedisStore:
        """Connect to ``url`` (``redis://``, ``rediss://``, ``unix://``) and check that the
        server answers, so a wrong URL or a down server stops start-up, not a request."""
        from authstate.stores.base import redact_url

        try:
            pool = ConnectionPool.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT,
                health_check_interval=HEALTH_CHECK_INTERVAL,
                # One quick retry on a dropped connection (a restarted server leaves
                # stale sockets in the pool); none on a timeout, which may have run.
                retry=Retry(
                    ExponentialBackoff(cap=0.05, base=0.01),
                    retries=1,
                    supported_errors=(redis_errors.ConnectionError,),
                ),
            )
        except ValueError as error:
            raise InvalidStoreURL(f"bad redis URL {redact_url(url)!r}: {error}") from None
        store = cls(
            Redis.from_pool(pool),
            url=url,
            clock=clock,
            namespace=namespace,
            audit_max=audit_max,
        )
        try:
            await store.ping()
        except StoreUnavailable:
            await store.close()
            raise
        return store

    def _unavailable(self, what: str, error: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"redis store {self._url} unavailable: {what} failed "
            f"({type(error).__name__}: {error})"
        )

    def _prefix(self, kind: str) -> str:
        prefix = self._rp.get(kind)
        if prefix is None:
            prefix = self._rp[kind] = f"{self._ns}:r:{kind}:"
        return prefix

    def _index(self, kind: str) -> str:
        return f"{self._ns}:u:{kind}:"

    def _live(self, key: str, flat: Sequence[bytes]) -> Record | None:
        """Decode a record; None when it is expired by the store's clock."""
        value = _decode(flat)
        expires_at = value.pop(META_EXPIRES, None)
        if expires_at is not None and expires_at <= self._clock.now():
            return None
        return Record(key, value, expires_at, value.pop(META_USER, None))

    def _records(self, flat: Sequence[Any]) -> list[Record]:
        out = []
        for i in range(0, len(flat), 2):
            record = self._live(flat[i].decode(), flat[i + 1])
            if record is not None:
                out.append(record)
        return out

    def _expiry(self, expires_at: float | None, now: float) -> tuple[str, str]:
        """The expiry as stored (JSON) and as a Redis TTL in milliseconds."""
        if expires_at is None:
            return "null", ""
        if not math.isfinite(expires_at):
            raise ValueError("expires_at must be a finite time, or None")
        return repr(float(expires_at)), _ttl_ms(expires_at, now)

    async def get(self, kind: str, key: str) -> Record | None:
        """One ``HGETALL``, sent directly and together with the other reads of this
        event-loop turn: concurrent requests (a busy server has many at once) share one
        write, one socket wake-up and one pooled connection for their reads, where each
        would otherwise pay its own (py-spy under ``benchmarks/middleware_throughput.py``
        had the asyncio send path as the largest single cost of a Redis-backed session
        request; with ``UserCache``, it halved the server CPU per such request). The direct
        send skips the generic command path (its retry wrapper, metrics hooks and reply
        callbacks), which costs more than decoding the record. The connection itself
        still times out, health-checks, and drops itself on any error, and a dropped
        connection is retried once (a read is safe to repeat).

        The gathering is the same on every Redis deployment; how one turn's reads travel
        is ``_fetch``'s, which a deployment overrides (``stores/redis_cluster.py`` sends
        one batch per node)."""
        name = (self._rp.get(kind) or self._prefix(kind)) + key
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        reads = self._reads
        reads.append((name, future))
        if len(reads) == 1:
            loop.call_soon(self._send_reads)
        try:
            flat = await future
        except _DOWN as error:
            raise self._unavailable(f"get {kind}", error) from None
        if not flat:
            return None
        value = _decode(flat)
        expires_at = value.pop(META_EXPIRES, None)
        if expires_at is not None and expires_at <= self._clock.now():
            return None
        return Record(key, value, expires_at, value.pop(META_USER, None))

    def _send_reads(self) -> None:
        """Hand this turn's reads to one task: a reader cancelled meanwhile (its
        request gone) does not cancel the others' round trip."""
        reads, self._reads = self._reads, []
        task = asyncio.get_running_loop().create_task(self._answer(reads))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _answer(self, reads: list[Read]) -> None:
        """Run ``_fetch``; a failure answers every future still waiting, so no reader
        waits for an answer that will not come."""
        try:
            await self._fetch(reads)
        except BaseException as error:
            failure = error if isinstance(error, Exception) else redis_errors.ConnectionError(
                "the read was cancelled")
            for _, future in reads:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(error, Exception):
                raise

    async def _fetch(self, reads: list[Read]) -> None:
        """Send every ``HGETALL`` in one write on one pooled connection, read the replies
        in order, and answer each future; a dropped connection is retried once."""
        pool = self._pool
        for attempt in (1, 2):
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.send_packed_command(
                    conn.pack_commands([("HGETALL", name) for name, _ in reads])
                )
                for _, future in reads:
                    try:
                        reply = await conn.read_response()
                    except redis_errors.ResponseError as error:  # this key only
                        reply = error
                    settle(future, reply)
                return
            except redis_errors.ConnectionError:
                if attempt == 2:
                    raise
            finally:
                await pool.release(conn)

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
        owner = "" if user_id is None else _dumps_user(user_id)
        args = [repr(now), self._index(kind), key, e, owner, ttl, *_fields(value)]
        try:
            return await script(keys=[self._prefix(kind) + key], args=args)
        except _DOWN as error:
            raise self._unavailable(f"{what} {kind}", error) from None

    async def put(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> None:
        await self._write(self._put, "put", kind, key, value, expires_at, user_id)

    async def create(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> bool:
        created = await self._write(
            self._create, "create", kind, key, value, expires_at, user_id
        )
        return bool(created)

    async def patch(
        self, kind: str, key: str, fields: JSON, *, expires_at: float | None = None
    ) -> Record | None:
        now = self._clock.now()
        e, ttl = ("-", "") if expires_at is None else self._expiry(expires_at, now)
        args = [repr(now), self._index(kind), key, e, ttl, *_fields(fields)]
        try:
            flat = await self._patch(keys=[self._prefix(kind) + key], args=args)
        except _DOWN as error:
            raise self._unavailable(f"patch {kind}", error) from None
        return None if flat is None else _record(key, flat)

    async def merge(
        self, kind: str, key: str, field: str, fields: JSON, *, max_bytes: int
    ) -> Record | None:
        """Redis's check-and-set: ``WATCH`` the record, merge in Python, write the field
        in ``MULTI``; a concurrent write to the record aborts the ``EXEC`` and the merge
        runs again on what that write left, so no update is lost and one always wins
        (since Redis 6.0.9 a key expiring under ``WATCH`` also aborts the ``EXEC``).
        Not a Lua script: ``cjson`` would turn an empty list into ``{}`` and round
        floats to 14 digits in the caller's data, and the merge rule and size measure
        stay the one ``merge_object`` of every backend."""
        name = self._prefix(kind) + key
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(name)
                        flat: Any = await pipe.hgetall(name)  # flat list: see __init__
                        record = self._live(key, flat) if flat else None
                        if record is None:
                            return None
                        merged = merge_object(record.value.get(field), fields, max_bytes)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(name, field_name(field), _dumps(merged))
                        await pipe.execute()
                        return record._replace(value={**record.value, field: merged})
                    except redis_errors.WatchError:
                        continue
        except _DOWN as error:
            raise self._unavailable(f"merge {kind}", error) from None

    async def delete(self, kind: str, key: str) -> Record | None:
        now = self._clock.now()
        try:
            flat = await self._delete(
                keys=[self._prefix(kind) + key], args=[repr(now), self._index(kind), key]
            )
        except _DOWN as error:
            raise self._unavailable(f"delete {kind}", error) from None
        return None if flat is None else _record(key, flat)

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
        now = self._clock.now()
        e, ttl = ("-", "") if expires_at is None else self._expiry(expires_at, now)
        prefix = self._prefix(kind)
        args = [repr(now), self._index(kind), old_key, new_key, e, ttl, *_fields(fields or {})]
        try:
            flat = await self._rename(keys=[prefix + old_key, prefix + new_key], args=args)
        except _DOWN as error:
            raise self._unavailable(f"rename {kind}", error) from None
        return None if flat is None else _record(new_key, flat)

    async def list_by_user(self, kind: str, user_id: str) -> list[Record]:
        args = [repr(self._clock.now()), self._prefix(kind), _dumps_user(user_id)]
        try:
            flat = await self._list(keys=[self._index(kind) + user_id], args=args)
        except _DOWN as error:
            raise self._unavailable(f"list_by_user {kind}", error) from None
        return self._records(flat)

    async def delete_by_user(
        self, kind: str, user_id: str, *, keep: str | None = None
    ) -> list[Record]:
        args = [repr(self._clock.now()), self._prefix(kind), _dumps_user(user_id), keep or ""]
        try:
            flat = await self._delete_by_user(keys=[self._index(kind) + user_id], args=args)
        except _DOWN as error:
            raise self._unavailable(f"delete_by_user {kind}", error) from None
        return self._records(flat)

    async def scan(self, kind: str, *, prefix: str = "", limit: int = 1000) -> list[Record]:
        record_prefix = self._prefix(kind)
        skip = len(record_prefix)
        pattern = record_prefix + glob_escape(prefix) + "*"
        found: list[Record] = []
        cursor = 0
        try:
            while len(found) < limit:
                reply: Any = await self._redis.scan(cursor, match=pattern, count=SCAN_COUNT)
                cursor, names = reply
                if names:
                    pipe = self._redis.pipeline(transaction=False)
                    for name in names:
                        pipe.hgetall(name)
                    for name, flat in zip(names, await pipe.execute(), strict=True):
                        if flat and (record := self._live(name[skip:].decode(), flat)):
                            found.append(record)
                if cursor == 0:
                    break
        except _DOWN as error:
            raise self._unavailable(f"scan {kind}", error) from None
        found.sort(key=lambda r: r.key)
        return found[:limit]

    async def incr(self, kind: str, key: str, *, expires_at: float | None = None) -> int:
        check_kind_key(kind, key)
        now = self._clock.now()
        e, ttl = self._expiry(expires_at, now)
        try:
            count = await self._incr(keys=[self._prefix(kind) + key], args=[repr(now), e, ttl])
        except _DOWN as error:
            raise self._unavailable(f"incr {kind}", error) from None
        return int(count)

    async def incr_below(
        self, kind: str, key: str, *, limit: int, expires_at: float | None = None
    ) -> int | None:
        check_kind_key(kind, key)
        check_limit(limit)
        now = self._clock.now()
        e, ttl = self._expiry(expires_at, now)
        try:
            count = await self._incr_below(
                keys=[self._prefix(kind) + key], args=[repr(now), e, ttl, limit]
            )
        except _DOWN as error:
            raise self._unavailable(f"incr {kind}", error) from None
        return None if count is None else int(count)

    async def decr(self, kind: str, key: str) -> int | None:
        try:
            count = await self._decr(
                keys=[self._prefix(kind) + key], args=[repr(self._clock.now())]
            )
        except _DOWN as error:
            raise self._unavailable(f"decr {kind}", error) from None
        return None if count is None else int(count)

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
        now = self._clock.now()
        e, ttl = self._expiry(new_expires_at, now)
        spent = _fields(fields)
        spent_expiry = (
            ("", "") if spent_expires_at is None else self._expiry(spent_expires_at, now)
        )
        prefix = self._prefix(kind)
        args: list[str | int] = [
            repr(now), self._index(kind), new_key, e,
            "" if user_id is None else _dumps_user(user_id), ttl, *spent_expiry, len(spent),
            *spent, *_fields(new_value),
        ]
        try:
            result = await self._spend(keys=[prefix + key, prefix + new_key], args=args)
        except _DOWN as error:
            raise self._unavailable(f"spend {kind}", error) from None
        if result is None:
            return None, False
        before, rotated = result
        return _record(key, before), bool(rotated)

    async def append_event(self, event: JSON) -> str:
        try:
            event_id = await self._redis.xadd(
                self._audit,
                {
                    "ts": repr(float(event.get("ts", 0.0))),
                    "t": _dumps(event.get("type")),
                    "u": _dumps(event.get("user_id")),
                    "j": _dumps(event),
                },
                maxlen=self._audit_max,
                approximate=True,
            )
        except _DOWN as error:
            raise self._unavailable("append_event", error) from None
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    async def query_events(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        since: float | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRow]:
        if before_id is not None and not _STREAM_ID.match(before_id):
            raise InvalidInput("not an audit cursor from this store")
        want_user = None if user_id is None else _dumps(user_id).encode()
        want_type = None if type is None else _dumps(type).encode()
        filtered = want_user is not None or want_type is not None or since is not None
        page = min(max(limit, 200), 1000) if filtered else limit
        upper = "+" if before_id is None else "(" + before_id
        rows: list[AuditRow] = []
        try:
            while len(rows) < limit:
                batch: Any = await self._redis.xrevrange(
                    self._audit, max=upper, min="-", count=page
                )
                if not batch:
                    break
                for entry_id, entry in batch:
                    if want_user is not None and entry[b"u"] != want_user:
                        continue
                    if want_type is not None and entry[b"t"] != want_type:
                        continue
                    if since is not None and float(entry[b"ts"]) < since:
                        continue
                    rows.append(AuditRow(entry_id.decode(), json.loads(entry[b"j"])))
                    if len(rows) >= limit:
                        break
                if len(batch) < page:
                    break
                upper = "(" + batch[-1][0].decode()
        except _DOWN as error:
            raise self._unavailable("query_events", error) from None
        return rows

    async def scrub_audit(self, user_id: str, fields: tuple[str, ...]) -> int:
        """Find the user's events with a scan of the stream (XRANGE pages, as
        ``query_events`` filters), scrub them here, and rewrite the stream's tail from
        the oldest of them in one script (``_SCRUB_AUDIT``), ids and order kept."""
        want = _dumps(user_id).encode()
        changes: list[str] = []
        oldest: str | None = None
        lower = "-"
        try:
            while True:
                batch: Any = await self._redis.xrange(
                    self._audit, min=lower, max="+", count=SCAN_COUNT
                )
                for entry_id, entry in batch or ():
                    if entry[b"u"] != want:
                        continue
                    scrubbed = scrub_event(json.loads(entry[b"j"]), fields)
                    if scrubbed is not None:
                        oldest = oldest or entry_id.decode()
                        changes += [entry_id.decode(), _dumps(scrubbed)]
                if not batch or len(batch) < SCAN_COUNT:
                    break
                lower = "(" + batch[-1][0].decode()
            if oldest is None:
                return 0
            return int(await self._scrub_audit(keys=[self._audit], args=[oldest, *changes]))
        except _DOWN as error:
            raise self._unavailable("scrub_audit", error) from None

    async def prune_events(self, before: float) -> int:
        """Events are appended in time order, so the old ones are the head of the stream:
        find the first entry at or after ``before`` and trim everything ahead of it. (An
        event appended late with an older ``ts`` waits for a later prune.)"""
        lower = "-"
        try:
            while True:
                batch: Any = await self._redis.xrange(
                    self._audit, min=lower, max="+", count=SCAN_COUNT
                )
                for entry_id, entry in batch or ():
                    if float(entry[b"ts"]) >= before:
                        return await self._trim(entry_id.decode())
                if not batch:
                    break
                lower = "(" + batch[-1][0].decode()
                if len(batch) < SCAN_COUNT:
                    break
            return 0 if lower == "-" else await self._trim(_after(lower[1:]))
        except _DOWN as error:
            raise self._unavailable("prune_events", error) from None

    async def _trim(self, minid: str) -> int:
        return int(await self._redis.xtrim(self._audit, minid=minid, approximate=False))

    async def sweep(self, *, batch: int = 1000) -> int:
        """Redis drops expired records by their TTL as they fall due, so there is nothing
        to sweep; records expired only by an injected clock are hidden on every read and
        their index entries dropped when the index is next read."""
        return 0

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except _DOWN as error:
            raise self._unavailable("ping", error) from None

    async def persistence(self) -> bool | None:
        """Whether the server keeps data on disk (RDB snapshots or AOF): a fact for the
        core's start-up warning. None when it cannot tell (``CONFIG`` is disabled or not
        permitted, as on many managed services)."""
        try:
            save = await self._redis.config_get("save")
            aof = await self._redis.config_get("appendonly")
        except redis_errors.ResponseError:  # NoPermissionError and renamed CONFIG alike
            return None
        except _DOWN as error:
            raise self._unavailable("config get", error) from None
        pairs = [*save, *aof]  # flat [name, value, ...] replies
        found = {_text(k): _text(v) for k, v in zip(pairs[::2], pairs[1::2], strict=True)}
        snapshots = found.get("save", "").strip()
        appendonly = found.get("appendonly", "no").strip().lower()
        return bool(snapshots) or appendonly == "yes"

    async def drop_namespace(self) -> None:
        """Delete every key under this namespace (tests, and tearing a deployment down)."""
        try:
            batch: list[bytes] = []
            async for name in self._redis.scan_iter(match=f"{self._ns}:*", count=SCAN_COUNT):
                batch.append(name)
                if len(batch) >= SCAN_COUNT:
                    await self._redis.unlink(*batch)
                    batch = []
            if batch:
                await self._redis.unlink(*batch)
        except _DOWN as error:
            raise self._unavailable("drop_namespace", error) from None

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _after(stream_id: str) -> str:
    """The smallest stream id greater than ``stream_id``."""
    ms, seq = stream_id.split("-")
    return f"{ms}-{int(seq) + 1}"
