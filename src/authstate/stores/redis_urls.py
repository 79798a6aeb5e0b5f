"""The multi-host Redis URLs: ``redis+cluster://`` and ``redis+sentinel://``.

redis-py reads single-server URLs itself; these two name several servers, which its URL
parser does not accept, so they are read here once, for the store and the bus alike:

- ``redis+cluster://[user:password@]host:port[,host:port...]/`` (``rediss+cluster`` for
  TLS): any reachable node is a seed; the client learns the rest of the cluster from it.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/db]``
  (``rediss+sentinel`` for TLS to the data servers): the sentinels to ask, the service
  they watch, and the database number on its primary. The password, when given, is the
  data servers' one; sentinels are asked without.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from authstate.errors import InvalidStoreURL

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PORT = 6379
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]{1,5}))?$")
_SERVICE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True, slots=True)
class HostsURL:
    """A parsed multi-host Redis URL."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    service: str | None = None
    db: int = 0


def parse(url: str) -> HostsURL:
    """Read a ``redis+cluster://`` or ``redis+sentinel://`` URL; ``InvalidStoreURL``
    (without the password) when it is not one."""
    from authstate.stores.base import redact_url

    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        raise InvalidStoreURL(f"not a cluster or sentinel URL: {redact_url(url)!r}")
    sentinel = scheme in SENTINEL_SCHEMES
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    if query:
        raise InvalidStoreURL(f"{scheme}:// takes no query options: {redact_url(url)!r}")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = []
    for item in hostlist.split(","):
        match = _HOST.match(item.strip())
        if match is None:
            raise InvalidStoreURL(f"bad host {item!r} in {redact_url(url)!r}")
        port = int(match.group(2) or (DEFAULT_SENTINEL_PORT if sentinel else DEFAULT_PORT))
        if not 0 < port < 65536:
            raise InvalidStoreURL(f"bad port in {redact_url(url)!r}")
        hosts.append((match.group(1).strip("[]"), port))
    parts = [p for p in path.split("/") if p]
    service: str | None = None
    db = 0
    if sentinel:
        if not parts or not _SERVICE.match(parts[0]) or len(parts) > 2:
            raise InvalidStoreURL(
                f"{scheme}:// needs /SERVICE[/db] after the sentinels: {redact_url(url)!r}"
            )
        service = parts[0]
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise InvalidStoreURL(f"bad database number in {redact_url(url)!r}")
            db = int(parts[1])
    elif parts:
        raise InvalidStoreURL(
            f"a Redis Cluster has only database 0; no path after the nodes: {redact_url(url)!r}"
        )
    return HostsURL(
        scheme, tuple(hosts), username, password, scheme.startswith("rediss"), service, db
    )
