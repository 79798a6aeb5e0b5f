"""The SQL that the SQLite and PostgreSQL stores share, written once.

Both engines speak the same dialect for everything except JSON: ``INSERT … ON CONFLICT
… DO UPDATE … WHERE``, ``DELETE … RETURNING`` and key-range scans read the same
on SQLite (3.35+) and PostgreSQL. So the statements live here with ``?`` placeholders
and a ``{records}``/``{audit}`` table name, and each backend renders them once at open
(PostgreSQL with ``%s`` and its schema-qualified tables). What only one engine can say
well — merging JSON, the counter update, the rotation, the sweep — stays in that
backend's module, written in its own idiom.

A record is live while ``expires_at`` is NULL or later than the caller's clock, which
is always passed in as a parameter: the database's own clock is never consulted, so an
injected clock moves time on SQL exactly as it does in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from authstate.errors import InvalidInput

AUDIT_ID_DIGITS = 20

# Plain literals rather than assembled strings, so each statement reads as the SQL it is.
TEMPLATES = {
    "get": "SELECT value, expires_at, user_id FROM {records}"
    " WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
    "put": "INSERT INTO {records} (kind, key, value, expires_at, user_id)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET"
    " value = excluded.value, expires_at = excluded.expires_at, user_id = excluded.user_id",
    # Replaces an existing row only when it has expired: "insert unless live" in one
    # statement, so concurrent creators race on the primary key and exactly one wins.
    "create": "INSERT INTO {records} (kind, key, value, expires_at, user_id)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET"
    " value = excluded.value, expires_at = excluded.expires_at, user_id = excluded.user_id"
    " WHERE {records}.expires_at IS NOT NULL AND {records}.expires_at <= ?",
    # The caller checks the returned expires_at: an expired row is removed all the same.
    "delete": "DELETE FROM {records} WHERE kind = ? AND key = ?"
    " RETURNING value, expires_at, user_id",
    "list_by_user": "SELECT key, value, expires_at, user_id FROM {records}"
    " WHERE kind = ? AND user_id = ? AND (expires_at IS NULL OR expires_at > ?)",
    # Keys are never empty, so ``key <> ''`` keeps everything when nothing is kept.
    "delete_by_user": "DELETE FROM {records} WHERE kind = ? AND user_id = ? AND key <> ?"
    " RETURNING key, value, expires_at, user_id",
    # A prefix is a key range, not a LIKE pattern: '%' and '_' in it are plain characters,
    # and the primary key index serves the range.
    "scan": "SELECT key, value, expires_at, user_id FROM {records}"
    " WHERE kind = ? AND key >= ? AND key < ? AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY key LIMIT ?",
    "scan_open": "SELECT key, value, expires_at, user_id FROM {records}"
    " WHERE kind = ? AND key >= ? AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY key LIMIT ?",
    "append_event": "INSERT INTO {audit} (ts, type, user_id, event) VALUES (?, ?, ?, ?)"
    " RETURNING id",
    "prune_events": "DELETE FROM {audit} WHERE ts < ?",
    "user_events": "SELECT id, event FROM {audit} WHERE user_id = ? ORDER BY id",
    "rewrite_event": "UPDATE {audit} SET event = ? WHERE id = ?",
    "query_events": "SELECT id, event FROM {audit} WHERE {where} ORDER BY id DESC LIMIT ?",
}


@dataclass(frozen=True, slots=True)
class Statements:
    """The shared statements, rendered for one engine and one set of tables."""

    get: str
    put: str
    create: str
    delete: str
    list_by_user: str
    delete_by_user: str
    scan: str
    scan_open: str
    append_event: str
    prune_events: str
    user_events: str
    rewrite_event: str
    query_events_template: str
    placeholder: str

    @classmethod
    def render(cls, *, records: str, audit: str, placeholder: str) -> Statements:
        rendered = {
            name: template.replace("{where}", "{{where}}")
            .format(records=records, audit=audit)
            .replace("?", placeholder)
            for name, template in TEMPLATES.items()
        }
        rendered["query_events_template"] = rendered.pop("query_events")
        return cls(placeholder=placeholder, **rendered)

    def query_events(
        self,
        *,
        user_id: str | None,
        type: str | None,
        since: float | None,
        before_id: str | None,
        limit: int,
    ) -> tuple[str, list[object]]:
        """The audit query for these filters, newest first, and its parameters."""
        p = self.placeholder
        clauses: list[str] = []
        params: list[object] = []
        if user_id is not None:
            clauses.append(f"user_id = {p}")
            params.append(user_id)
        if type is not None:
            clauses.append(f"type = {p}")
            params.append(type)
        if since is not None:
            clauses.append(f"ts >= {p}")
            params.append(since)
        if before_id is not None:
            clauses.append(f"id < {p}")
            params.append(audit_id_number(before_id))
        params.append(limit)
        return self.query_events_template.format(where=" AND ".join(clauses) or "TRUE"), params



def audit_id(number: int) -> str:
    """The public form of an audit row id: zero-padded, so ids sort as strings too
    (the same shape as the memory store's)."""
    return f"{number:0{AUDIT_ID_DIGITS}d}"


def audit_id_number(audit_id: str) -> int:
    """The row id behind a cursor; a cursor that was not made by ``audit_id`` is an
    error rather than a silently wrong page (it often comes from a query string)."""
    if not (isinstance(audit_id, str) and audit_id.isascii() and audit_id.isdigit()):
        raise InvalidInput("audit cursor must be an id returned by this store")
    if len(audit_id) > AUDIT_ID_DIGITS:
        raise InvalidInput("audit cursor out of range")
    return int(audit_id)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (by code
    point, which is UTF-8 byte order), or None when there is none.

    ``key >= prefix AND key < prefix_end(prefix)`` is then exactly "starts with prefix",
    with no wildcard to escape. Surrogates are skipped because they cannot be encoded.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None
