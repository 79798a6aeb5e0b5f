"""One bench run: build the models, warm them up, measure them interleaved, summarise.

Reproducibility comes from three habits: a fixed warm-up (a number of calls, not a
time), the order of models rotated every round so that a machine that drifts (turbo,
a noisy neighbour, a cache filling) does not favour whichever model runs first, and
throughput reported as the median of the rounds with the spread beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TypeVar

from authstate.bench import machine
from authstate.bench.http import (
    BenchServer,
    Load,
    load,
    read_response,
    request_bytes,
    scratch_dir,
)
from authstate.bench.models import Model, ServiceInfo, Unavailable, Workshop
from authstate.bench.plan import BenchConfig, model_specs
from authstate.bench.stats import Delays, Figures, summarise, summarise_delays
from authstate.config import Settings
from authstate.errors import InvalidToken
from authstate.inspection import decode
from authstate.state import AuthState

T = TypeVar("T")

HEADER_NAMES = {"cookie": "Cookie", "authorization": "Authorization"}
POLL_LIMIT = 5.0
PERMISSION_SCOPE = "bench:read"
SCHEMA = "authstate-bench/1"
NOTES = (
    "latencies in microseconds; throughput is the median of the per-round rates, spread is "
    "(max - min) / median of those rates",
    "jwt/<alg>, jwt+denylist and jwt+push run with the verified-token cache off (a "
    "signature verify per request); jwt+cache shows the default, where a repeated token "
    "skips the verify",
    "HTTP: the protected endpoint behind authstate's AuthMiddleware in a separate server "
    "process, loaded over 127.0.0.1 with keep-alive connections; opaque+introspection's "
    "resource server asks the authstate service's /oauth/introspect on every request",
    "revocation delay 0 means the first request sent after revoke returned was rejected; "
    "lifetime means the token stays valid until exp; for push between processes, "
    "push_arrival_* (table: bus ±µs) is when the second process applied the pushed event, "
    "relative to revoke returning in the first (negative: before it returned)",
    "permission change → refused: from AuthState.set_scopes (dropping the scope the "
    "credential holds) or disable_user returning, alternately, to the first refusal by a "
    "verifier (for jwt+push a second AuthState on the same store and bus, in this "
    "process); 0 means the next request was refused; JWT models without token versions "
    "are bounded by the token lifetime and are not waited for",
    "state bytes are a record's key plus its compact JSON value; engines add overhead",
    "credential bytes are the whole request header line that carries it (name, value, CRLF)",
)


class Tracker(Protocol):
    """Where the runner reports progress (a Rich progress bar in the CLI)."""

    def begin(self, total: int) -> None: ...

    def step(self, label: str) -> None: ...


class _Silent:
    def begin(self, total: int) -> None:
        pass

    def step(self, label: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Wire:
    """The credential as it travels: one request header line, and per 1,000 requests."""

    header: str
    bytes: int
    per_1000_requests: int


@dataclass(frozen=True, slots=True)
class StateBytes:
    """What the server keeps: per signed-in user, and per revoked credential (None when
    revoking is not possible)."""

    bytes_per_user: int
    bytes_per_revoked: int | None
    what: str


@dataclass(frozen=True, slots=True)
class ModelResult:
    name: str
    family: str
    store: str
    algorithm: str | None
    wire: Wire
    in_process: Figures
    http: Figures | None
    http_errors: int
    revocation: Delays
    state: StateBytes
    permission: Delays


@dataclass(frozen=True, slots=True)
class BenchResult:
    schema: str
    machine: dict[str, object]
    config: dict[str, Any]
    models: list[ModelResult]
    skipped: dict[str, str]
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rotated(items: Sequence[T], round_: int, rounds: int) -> list[T]:
    """The round's order: the list rotated by an even share per round, so that over the
    run each model sits early, in the middle and late, never always first."""
    if not items:
        return []
    shift = (round_ * len(items)) // max(1, rounds) % len(items)
    return list(items[shift:]) + list(items[:shift])


def wire_of(model: Model, credential: str) -> Wire:
    header = HEADER_NAMES.get(model.header_name, model.header_name)
    line = f"{header}: {model.header_value(credential)}\r\n"
    size = len(line.encode("latin-1"))
    return Wire(header=header, bytes=size, per_1000_requests=size * 1000)


async def _timed_calls(model: Model, credential: str, seconds: float) -> tuple[list[int], float]:
    samples: list[int] = []
    begin = time.perf_counter_ns()
    deadline = begin + int(seconds * 1e9)
    now = begin
    while now < deadline:
        start = time.perf_counter_ns()
        accepted = await model.authenticate(credential)
        now = time.perf_counter_ns()
        samples.append(now - start)
        if not accepted:
            raise RuntimeError(f"{model.spec.name} rejected its own credential")
    return samples, len(samples) / ((now - begin) / 1e9)


class Runner:
    def __init__(
        self, config: BenchConfig, settings: Settings, *, tracker: Tracker | None = None
    ) -> None:
        self.config = config
        self.settings = settings
        self.tracker = tracker or _Silent()
        self.namespace = "bench" + secrets.token_hex(4)
        self.notes: list[str] = list(NOTES)

    async def run(self) -> BenchResult:
        began = time.perf_counter()
        workshop = Workshop(
            self.settings, namespace=self.namespace, algorithm=self.config.algorithms[0]
        )
        specs = model_specs(self.config)
        models: list[Model] = []
        skipped: dict[str, str] = {}
        server: BenchServer | None = None
        try:
            if self.config.http:
                server = BenchServer(
                    specs,
                    namespace=self.namespace,
                    algorithm=self.config.algorithms[0],
                    overrides=self._overrides(),
                    spares=self.config.revocation_samples,
                )
                await server.start()
                if server.service is not None:
                    workshop.service = ServiceInfo(**server.service)
            for spec in specs:
                try:
                    models.append(await workshop.build(spec))
                except Unavailable as reason:
                    skipped[spec.name] = str(reason)
            if server is not None:
                for name, why in server.skipped.items():
                    skipped.setdefault(name, f"HTTP server: {why}")
            credentials = {
                m.spec.name: await self._credential(m, server) for m in models
            }
            per_model = 2 + self.config.rounds
            if self.config.http:
                per_model += 1 + self.config.rounds
            self.tracker.begin(len(models) * per_model + 2)
            in_process = await self._in_process(models, credentials)
            http: dict[str, tuple[Figures, int]] = {}
            delays: dict[str, Delays] = {}
            if server is not None:
                http = await self._http(models, server)
            delays = await self._revocations(models, server)
            state = {
                m.spec.name: StateBytes(
                    *await m.state_bytes(credentials[m.spec.name]), m.state_what
                )
                for m in models
            }
            self.tracker.step("state per user")
            permission = {m.spec.name: await self._permission_change(m) for m in models}
            self.tracker.step("permission changes")
        finally:
            if server is not None:
                await server.stop()
            await workshop.close(drop=True)
        results = [
            ModelResult(
                name=m.spec.name,
                family=m.spec.family,
                store=m.spec.store.split("://", 1)[0],
                algorithm=m.spec.algorithm,
                wire=wire_of(m, credentials[m.spec.name]),
                in_process=in_process[m.spec.name],
                http=http[m.spec.name][0] if m.spec.name in http else None,
                http_errors=http[m.spec.name][1] if m.spec.name in http else 0,
                revocation=delays.get(m.spec.name) or self._unmeasured_delay(m),
                state=state[m.spec.name],
                permission=permission[m.spec.name],
            )
            for m in models
        ]
        return BenchResult(
            schema=SCHEMA,
            machine=machine.facts(),
            config=self._config_json(),
            models=results,
            skipped=skipped,
            notes=self.notes,
            elapsed_s=round(time.perf_counter() - began, 2),
        )

    async def _credential(self, model: Model, server: BenchServer | None) -> str:
        """The in-process credential. An introspected token must be one the service can
        see, so it is the server's own (its store may be a memory store private to it)."""
        if model.spec.family == "opaque+introspection" and server is not None:
            return server.credentials[model.spec.name][0]
        return await model.issue()

    def _overrides(self) -> dict[str, Any]:
        return {}

    def _config_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "stores": [s.split("://", 1)[0] + "://…" if "@" in s else s for s in c.stores],
            "algorithms": list(c.algorithms),
            "duration_s": c.duration,
            "rounds": c.rounds,
            "warmup_calls": c.warmup,
            "http_warmup_s": c.http_warmup,
            "concurrency": c.concurrency,
            "revocation_samples": c.revocation_samples,
            "quick": c.quick,
            "access_token_ttl_s": self.settings.tokens.access_ttl,
        }

    async def _in_process(
        self, models: list[Model], credentials: dict[str, str]
    ) -> dict[str, Figures]:
        for model in models:
            for _ in range(self.config.warmup):
                await model.authenticate(credentials[model.spec.name])
            self.tracker.step(f"warm-up {model.spec.name}")
        samples: dict[str, list[int]] = {m.spec.name: [] for m in models}
        rates: dict[str, list[float]] = {m.spec.name: [] for m in models}
        for round_ in range(self.config.rounds):
            for model in rotated(models, round_, self.config.rounds):
                name = model.spec.name
                got, rate = await _timed_calls(model, credentials[name], self.config.slice_seconds)
                samples[name].extend(got)
                rates[name].append(rate)
                self.tracker.step(f"in process: {name} (round {round_ + 1})")
        return {name: summarise(samples[name], rates[name]) for name in samples}

    def _request(self, model: Model, server: BenchServer, credential: str) -> bytes:
        header = HEADER_NAMES.get(model.header_name, model.header_name)
        return request_bytes(
            server.paths[model.spec.name], server.port, header, model.header_value(credential)
        )

    async def _http(
        self, models: list[Model], server: BenchServer
    ) -> dict[str, tuple[Figures, int]]:
        served = [m for m in models if m.spec.name in server.paths]
        requests = {
            m.spec.name: self._request(m, server, server.credentials[m.spec.name][0])
            for m in served
        }
        connections = self.config.concurrency
        for model in served:
            warm = await load(
                server.port, requests[model.spec.name],
                connections=connections, seconds=self.config.http_warmup,
            )
            if warm.ok == 0:
                raise RuntimeError(
                    f"{model.spec.name}: the HTTP server rejected every request "
                    f"({warm.errors} errors); server said: {server.stderr_tail(400)}"
                )
            self.tracker.step(f"HTTP warm-up {model.spec.name}")
        loads: dict[str, list[Load]] = {m.spec.name: [] for m in served}
        for round_ in range(self.config.rounds):
            for model in rotated(served, round_, self.config.rounds):
                name = model.spec.name
                loads[name].append(
                    await load(
                        server.port, requests[name],
                        connections=connections, seconds=self.config.slice_seconds,
                    )
                )
                self.tracker.step(f"HTTP: {name} (round {round_ + 1})")
        figures: dict[str, tuple[Figures, int]] = {}
        for name, runs in loads.items():
            latencies = [x for run in runs for x in run.latencies_ns]
            figures[name] = (
                summarise(latencies, [run.rate for run in runs]),
                sum(run.errors for run in runs),
            )
        return figures

    async def _revocations(
        self, models: list[Model], server: BenchServer | None
    ) -> dict[str, Delays]:
        delays: dict[str, Delays] = {}
        for model in models:
            name = model.spec.name
            shared = not model.spec.store.startswith("memory")
            if model.revocation_kind == "lifetime":
                pass
            elif model.revocation_kind == "push" and not shared:
                delays[name] = summarise_delays(
                    "push", await self._push_in_process(model),
                    "in process: a second AuthState on the same memory store and memory bus "
                    "(give --store redis://… or postgresql://… to measure between processes)",
                )
            elif server is not None and name in server.paths:
                measured: list[float] = []
                returned: dict[str, float] = {}
                for credential in server.credentials[name][1:]:
                    outcome = await self._one_revocation(model, server, credential, shared)
                    if outcome is not None:
                        measured.append(outcome[0])
                        if model.revocation_kind == "push":
                            returned[unverified_jti(credential)] = outcome[1]
                where = (
                    "revoked in the bench process, rejected by the server process"
                    if shared
                    else "revoked and rejected in the server process (a memory store is "
                    "private to its process)"
                )
                arrivals = await self._arrivals(model, server, returned)
                delays[name] = summarise_delays(
                    model.revocation_kind, measured, where, arrivals
                )
            self.tracker.step(f"revocation {name}")
        return delays

    async def _push_in_process(self, model: Model) -> list[float]:
        """Revoke through the model's state; time until a second verifier sharing its
        store and bus rejects the token."""
        issuer = model.state
        verifier = AuthState(issuer.settings, issuer.store, clock=issuer.clock, bus=issuer.bus)
        await verifier.start()
        measured: list[float] = []
        try:
            for _ in range(self.config.revocation_samples):
                token = await model.issue()
                await verifier.authenticate_bearer(token)
                await model.revoke(token)
                revoked = time.perf_counter()
                first = True
                while time.perf_counter() - revoked < POLL_LIMIT:
                    try:
                        await verifier.authenticate_bearer(token)
                    except InvalidToken:
                        measured.append(0.0 if first else time.perf_counter() - revoked)
                        break
                    first = False
                    await asyncio.sleep(0)
        finally:
            await verifier.close()
        return measured

    async def _arrivals(
        self, model: Model, server: BenchServer, returned: dict[str, float]
    ) -> list[float]:
        """For pushed revocations: when each reached the server, relative to "revoke"
        returning here (both on the system-wide monotonic clock)."""
        if not returned:
            return []
        index = server.paths[model.spec.name].rsplit("/", 1)[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(request_bytes(f"/arrivals/{index}", server.port, "Accept", "*/*"))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(
                line.split(b":", 1)[1] for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ))
            seen: dict[str, float] = json.loads(await reader.readexactly(length))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return [seen[jti] - at for jti, at in returned.items() if jti in seen]

    async def _one_revocation(
        self, model: Model, server: BenchServer, credential: str, shared: bool
    ) -> tuple[float, float] | None:
        """Seconds from "revoke" returning to the first rejected request at the server
        (0.0 when the very first request after it is rejected), and the monotonic time
        "revoke" returned; None if the server never rejected it."""
        request = self._request(model, server, credential)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(request)
            if await read_response(reader) != 200:
                return None
            if shared:
                await model.revoke(credential)
            else:
                index = server.paths[model.spec.name].rsplit("/", 1)[1]
                body = credential.encode()
                writer.write(
                    f"POST /revoke/{index} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                )
                await read_response(reader)
            returned_at = time.monotonic()
            revoked = time.perf_counter()
            first = True
            while time.perf_counter() - revoked < POLL_LIMIT:
                writer.write(request)
                if await read_response(reader) != 200:
                    return (0.0 if first else time.perf_counter() - revoked), returned_at
                first = False
            return None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _permission_change(self, model: Model) -> Delays:
        """Permission change → refused, per model (see NOTES). Each trial gives the bench
        account back its standing and ``PERMISSION_SCOPE`` (untimed), mints a credential
        holding that scope, checks it is accepted, then alternates ``set_scopes([])`` and
        ``disable_user`` and polls the verifier until it refuses."""
        family = model.spec.family
        if family in ("jwt", "jwt+cache", "jwt+denylist"):
            ttl = float(self.settings.tokens.access_ttl)
            return Delays(
                kind="lifetime", median_s=ttl / 2, p99_s=ttl * 0.99, max_s=ttl, samples=0,
                note="no token version: the scopes in a JWT hold until it expires",
            )
        if family == "opaque+introspection":
            return Delays("immediate", 0.0, 0.0, 0.0, 0,
                          "not measured: the token lives at the service (as opaque)")
        state = model.state
        verifier = state
        if family == "jwt+push" and model.spec.store.startswith("memory"):
            # a memory store and bus exist in this process only: share them
            verifier = AuthState(state.settings, state.store, clock=state.clock, bus=state.bus)
            await verifier.start()
        elif family == "jwt+push":  # another instance: its own connections and bus
            verifier = await AuthState.open(state.settings)
        measured: list[float] = []
        try:
            for trial in range(self.config.revocation_samples):
                await state.enable_user(model.user_id, actor="bench")
                await state.set_scopes(model.user_id, [PERMISSION_SCOPE], actor="bench")
                credential = await self._scoped_credential(model)
                if not await _holds_scope(verifier, family, credential):
                    continue
                if trial % 2:
                    await state.disable_user(model.user_id, reason="bench", actor="bench")
                else:
                    await state.set_scopes(model.user_id, [], actor="bench")
                changed = time.perf_counter()
                first = True
                while time.perf_counter() - changed < POLL_LIMIT:
                    if not await _holds_scope(verifier, family, credential):
                        measured.append(0.0 if first else time.perf_counter() - changed)
                        break
                    first = False
                    await asyncio.sleep(0)
        finally:
            if verifier is not state:
                await verifier.close()
        await state.enable_user(model.user_id, actor="bench")
        where = ("a second AuthState on the same store and bus, in this process"
                 if verifier is not state else "the next in-process request (a store read)")
        return summarise_delays("push" if family == "jwt+push" else "immediate", measured, where)

    async def _scoped_credential(self, model: Model) -> str:
        """A credential of the model's kind that holds ``PERMISSION_SCOPE``, minted by
        the flows an application uses (a session; an access token for it; an opaque token)."""
        state = model.state
        if model.spec.family == "session":
            session_id, _ = await state.sessions.create(
                model.user_id, ip="127.0.0.1", user_agent="authstate-bench"
            )
            return session_id
        if model.spec.family == "opaque":
            token, _ = await state.opaque.issue(model.user_id, scope=(PERMISSION_SCOPE,))
            return token
        session_id, session = await state.sessions.create(
            model.user_id, ip="127.0.0.1", user_agent="authstate-bench"
        )
        token, _ = await state.issue_for_session(session, scope=(PERMISSION_SCOPE,))
        return token

    def _unmeasured_delay(self, model: Model) -> Delays:
        if model.revocation_kind == "lifetime":
            ttl = float(self.settings.tokens.access_ttl)
            return Delays(
                kind="lifetime", median_s=ttl / 2, p99_s=ttl * 0.99, max_s=ttl, samples=0,
                note="no revocation: valid until it expires (the median assumes revocation "
                "at a uniformly random moment of its lifetime)",
            )
        return Delays(model.revocation_kind, 0.0, 0.0, 0.0, 0, "not measured (no HTTP run)")


async def _holds_scope(verifier: AuthState, family: str, credential: str) -> bool:
    """Whether the verifier accepts the credential with ``PERMISSION_SCOPE``."""
    if family == "session":
        identity = await verifier.authenticate_session(credential)
    else:
        try:
            identity = await verifier.authenticate_bearer(credential)
        except InvalidToken:
            return False
    return identity is not None and PERMISSION_SCOPE in identity.scope


async def run_bench(
    config: BenchConfig, settings: Settings, *, tracker: Tracker | None = None
) -> BenchResult:
    """Run the bench; a default SQLite file lives in a scratch directory removed after."""
    scratch = None
    if not config.stores:
        scratch = scratch_dir()
        config = replace(config, stores=("memory://", f"sqlite:///{scratch / 'bench.db'}"))
    try:
        return await Runner(config, settings, tracker=tracker).run()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def unverified_jti(token: str) -> str:
    """The ``jti`` of a token the bench itself issued and has just revoked: verifying it
    again would (rightly) fail, and only its identity is needed here."""
    return str(decode(token)[1]["jti"])

