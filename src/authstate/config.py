"""Settings: one frozen object, grouped by concern, that the library takes as it is given.

The library never reads the environment or a file. ``Settings`` is a plain validated
value: build it with keywords (``Settings(store=StoreSettings(url="redis://…"))``) or,
with the flat names of the configuration table, ``Settings.from_flat(store="redis://…",
leeway=10)``. The edge (``authstate serve``, the CLI, the bench) calls ``load_settings``,
which reads the ``AUTHSTATE_*`` variables and the TOML file it is handed. Precedence,
lowest first: defaults, the TOML file, the environment, flags.

Every flat name ``x`` is the environment variable ``AUTHSTATE_X`` and the TOML key ``x``
(the README's configuration table lists them); ``FLAT`` maps each to its group and field.
A TOML file may also group keys in tables named after the groups (``[tokens]`` with
``leeway = 10``). Secrets (the metrics token, the key-encryption key, a password in a store
or bus URL) never appear in ``repr`` or ``str``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from authstate.clock import ACCESS_TTL_DEFAULT, LEEWAY_DEFAULT, LEEWAY_MAX, LONG_LIFETIME
from authstate.errors import ConfigurationError
from authstate.stores import NAMESPACE_PATTERN, redact_url

ENV_PREFIX = "AUTHSTATE_"
# Three days: a client away over a weekend still trips reuse detection when it comes back
# to find its token spent by a thief, while spent records (~1 KB per rotation) no longer
# pile up for the whole 14-day refresh TTL.
REUSE_WINDOW = 3 * 86400
METRICS_TOKEN_MIN = 16  # a bearer secret, not a password: long enough not to be guessed


class _Group(BaseModel):
    """Frozen, unknown names refused: a typo is an error at start-up, not a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StoreSettings(_Group):
    """Where state lives (``AUTHSTATE_STORE``, ``AUTHSTATE_NAMESPACE``)."""

    url: str = "sqlite:///authstate.db"
    namespace: str = Field("authstate", pattern=NAMESPACE_PATTERN.pattern)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The URL with its password masked: reprs end up in logs and tracebacks."""
        yield "url", redact_url(self.url)
        yield "namespace", self.namespace


class ServiceSettings(_Group):
    """The HTTP service and its operation: listener, mode, logs, metrics, cleanup."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Development mode sends cookies without Secure and __Host-: asked for, never assumed.
    dev: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    forwarded_allow_ips: str = ""
    metrics: bool = True
    # Bearer token that GET /metrics requires when set (compared in constant time).
    metrics_token: SecretStr | None = None
    # HOST:PORT of a separate listener serving only /metrics (then the main port has none).
    metrics_address: str | None = Field(
        None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$"
    )
    cleanup_interval: int = Field(60, ge=1)
    audit_retention_days: int = Field(90, ge=1)

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        """``debug`` as uvicorn and most tools take it, not only ``DEBUG``."""
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < METRICS_TOKEN_MIN:
            raise ValueError(f"metrics_token must be at least {METRICS_TOKEN_MIN} characters")
        return value

    @field_validator("metrics_address")
    @classmethod
    def _port_in_range(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= int(value.rpartition(":")[2]) <= 65535:
            raise ValueError("the port of metrics_address must be 1..65535")
        return value

    def metrics_listen(self) -> tuple[str, int] | None:
        """``metrics_address`` as ``(host, port)`` (brackets of an IPv6 host removed)."""
        if self.metrics_address is None:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        return host.strip("[]"), int(port)


class TokenSettings(_Group):
    """Access tokens and the signing keys behind them."""

    issuer: str = "http://127.0.0.1:8000"
    audience: str = "authstate"
    access_ttl: int = Field(ACCESS_TTL_DEFAULT, ge=10)
    allow_long_lifetime: bool = False
    leeway: int = Field(LEEWAY_DEFAULT, ge=0, le=LEEWAY_MAX)
    # of a new key set only (a stored one keeps its own); RS256 is OIDC's mandatory one
    key_algorithm: Literal[
        "EdDSA", "ES256", "RS256", "PS256", "HS256", "HS384", "HS512"
    ] = "RS256"
    # How long a rotated-in key is published before it signs (at least the JWKS max-age,
    # so caches hold it first), and how often each instance polls the store for a key
    # change (the bus, where there is one, is faster; this is the backstop).
    jwks_max_age: int = Field(300, ge=0, le=86400)
    key_prepublish: int = Field(600, ge=0, le=7 * 86400)
    key_poll_interval: float = Field(5.0, ge=0.05, le=300)
    # Private keys sealed at rest (AES-256-GCM) under these KEKs ("NEW[,OLD...]",
    # base64url of 32 random bytes each), inline or in a file; unset: plain JWKs.
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None
    # OAuth's legacy password grant (RFC 9700 §2.4: MUST NOT be used); false leaves the
    # authorization code flow only
    password_grant: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> TokenSettings:
        if self.access_ttl > LONG_LIFETIME and not self.allow_long_lifetime:
            raise ValueError(
                f"access_token_ttl over {LONG_LIFETIME} s needs allow_long_access_tokens=true"
            )
        if self.key_prepublish < self.jwks_max_age:
            raise ValueError(
                "key_prepublish must be at least jwks_max_age: a key must be in every "
                "cached JWKS before it signs"
            )
        return self


class SessionSettings(_Group):
    """Server-side sessions and their cookie."""

    idle_timeout: int = Field(30 * 60, ge=60)
    absolute_timeout: int = Field(12 * 3600, ge=60)
    touch_interval: int = Field(60, ge=0)
    # Seconds a process may keep a looked-up session (``SessionCache``): only while push
    # revocation is live, dropped at once by the event every session change announces,
    # so this bounds only the age of a copy whose event was lost. 0 reads the store.
    cache_seconds: float = Field(30.0, ge=0, le=300)
    cookie_name: str = Field("authstate_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="after")
    def _consistent(self) -> SessionSettings:
        if self.idle_timeout > self.absolute_timeout:
            raise ValueError("session_idle_timeout must not exceed session_absolute_timeout")
        return self


class RefreshSettings(_Group):
    """Refresh-token rotation and reuse detection (see the README)."""

    ttl: int = Field(14 * 86400, ge=60)
    family_ttl: int = Field(30 * 86400, ge=60)
    grace: int = Field(10, ge=0, le=300)
    reuse_window: int = Field(REUSE_WINDOW, ge=60)

    @model_validator(mode="after")
    def _consistent(self) -> RefreshSettings:
        if self.ttl > self.family_ttl:
            raise ValueError("refresh_ttl must not exceed refresh_family_ttl")
        if self.reuse_window < self.grace:
            raise ValueError("refresh_reuse_window must not be shorter than refresh_grace")
        return self


class RevocationSettings(_Group):
    """Which revocation policies run, and how events reach every instance."""

    denylist: bool = True
    token_version: bool = True
    session_bound: bool = True
    push: bool = True
    bus: str | None = None
    bus_fallback: Literal["store", "reject"] = "store"
    # Seconds a process may keep a user record for the session path (``usercache``):
    # only while push revocation is live, dropped at once by a change's event, so this
    # bounds only the age of a copy whose event was lost. 0 reads the store per request.
    user_cache_seconds: float = Field(30.0, ge=0, le=300)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """A bus URL is shown with its password masked, like the store's."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "bus" and value is not None else value


class ThrottleSettings(_Group):
    """Login attempts that may reach the password check, per fixed window."""

    account_limit: int = Field(5, ge=1)
    ip_limit: int = Field(50, ge=1)
    window: int = Field(15 * 60, ge=1)


class PasswordSettings(_Group):
    """argon2id cost; the defaults are OWASP's 19 MiB, t=2, p=1 (lower only for tests)."""

    time_cost: int = Field(2, ge=1, le=20)
    memory_kib: int = Field(19 * 1024, ge=8, le=4 * 1024 * 1024)
    parallelism: int = Field(1, ge=1, le=16)


# Each flat name (the README's AUTHSTATE_* table, the TOML keys) -> (group, field).
FLAT: dict[str, tuple[str, str]] = {
    "store": ("store", "url"),
    "namespace": ("store", "namespace"),
    **{name: ("service", name) for name in ServiceSettings.model_fields},
    "issuer": ("tokens", "issuer"),
    "audience": ("tokens", "audience"),
    "access_token_ttl": ("tokens", "access_ttl"),
    "allow_long_access_tokens": ("tokens", "allow_long_lifetime"),
    "leeway": ("tokens", "leeway"),
    "key_algorithm": ("tokens", "key_algorithm"),
    "jwks_max_age": ("tokens", "jwks_max_age"),
    "key_prepublish": ("tokens", "key_prepublish"),
    "key_poll_interval": ("tokens", "key_poll_interval"),
    "key_encryption_key": ("tokens", "key_encryption_key"),
    "key_encryption_key_file": ("tokens", "key_encryption_key_file"),
    "password_grant": ("tokens", "password_grant"),
    **{f"session_{name}": ("sessions", name) for name in SessionSettings.model_fields
       if name != "cookie_name"},
    "cookie_name": ("sessions", "cookie_name"),
    **{f"refresh_{name}": ("refresh", name) for name in RefreshSettings.model_fields},
    "revocation_denylist": ("revocation", "denylist"),
    "revocation_token_version": ("revocation", "token_version"),
    "revocation_session_bound": ("revocation", "session_bound"),
    "push_revocation": ("revocation", "push"),
    "bus": ("revocation", "bus"),
    "bus_fallback": ("revocation", "bus_fallback"),
    "user_cache_seconds": ("revocation", "user_cache_seconds"),
    **{f"throttle_{name}": ("throttle", name) for name in ThrottleSettings.model_fields},
    **{f"password_{name}": ("passwords", name) for name in PasswordSettings.model_fields},
}
_FLAT_NAME = {place: name for name, place in FLAT.items()}


class Settings(_Group):
    """Everything authstate is told, validated once at start-up; one group per concern."""

    store: StoreSettings = StoreSettings()
    service: ServiceSettings = ServiceSettings()
    tokens: TokenSettings = TokenSettings()
    sessions: SessionSettings = SessionSettings()
    refresh: RefreshSettings = RefreshSettings()
    revocation: RevocationSettings = RevocationSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    passwords: PasswordSettings = PasswordSettings()

    @classmethod
    def from_flat(cls, **values: Any) -> Settings:
        """Settings from the flat names of the configuration table (``leeway=10``,
        ``session_idle_timeout=600``); ``ConfigurationError`` names the variable."""
        grouped: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name not in FLAT:
                raise ConfigurationError(
                    f"invalid settings: {name} ({ENV_PREFIX}{name.upper()}): unknown setting"
                )
            group, field = FLAT[name]
            grouped.setdefault(group, {})[field] = value
        try:
            return cls.model_validate(grouped)
        except ValidationError as error:
            raise ConfigurationError(_describe(error)) from error

    def flat(self) -> dict[str, Any]:
        """Every setting under its flat name (secrets stay wrapped)."""
        return {name: getattr(getattr(self, group), field)
                for name, (group, field) in FLAT.items()}

    def replace(self, **values: Any) -> Settings:
        """A copy with some settings changed (flat names), validated like the original."""
        return Settings.from_flat(**{**self.flat(), **values})

    def to_json(self) -> str:
        """Every setting as JSON, secrets REVEALED: only for handing the resolved settings
        to a child process (``serve --workers``), never for a log or a file."""
        return json.dumps({
            name: value.get_secret_value() if isinstance(value, SecretStr)
            else str(value) if isinstance(value, Path) else value
            for name, value in self.flat().items()
        })

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings ``to_json`` wrote."""
        return cls.from_flat(**json.loads(text))


def read_values(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str],
    **flags: Any,
) -> dict[str, Any]:
    """The flat settings given explicitly: the TOML file, then ``AUTHSTATE_*`` in ``env``,
    then ``flags`` (None means not given). Defaults are left to ``Settings``."""
    values = _read_toml(config_file) if config_file is not None else {}
    for name in FLAT:
        if (given := env.get(f"{ENV_PREFIX}{name.upper()}")) is not None:
            values[name] = given
    values.update({name: value for name, value in flags.items() if value is not None})
    return values


def load_settings(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str],
    **flags: Any,
) -> Settings:
    """For the edge only (``serve``, the CLI, the bench): defaults < TOML file <
    ``AUTHSTATE_*`` in ``env`` (the caller passes ``os.environ``) < ``flags``."""
    return Settings.from_flat(**read_values(config_file, env=env, **flags))


def _read_toml(config_file: str | Path) -> dict[str, Any]:
    """Flat keys, optionally under ``[authstate]``; a table named after a group holds
    that group's fields (``[tokens]`` ``leeway = 10``)."""
    try:
        with Path(config_file).open("rb") as f:
            document = tomllib.load(f)
    except OSError as error:
        raise ConfigurationError(f"cannot read config file: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"config file is not valid TOML: {error}") from error
    document = document.get("authstate", document)
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key in Settings.model_fields and isinstance(value, dict):
            for field, inner in value.items():
                # an unknown field keeps a name that from_flat refuses, naming the table
                values[_FLAT_NAME.get((key, field), f"{key}.{field}")] = inner
        else:
            values[key] = value
    return values


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        loc = [str(x) for x in e["loc"]]
        name = _FLAT_NAME.get((loc[0], loc[1])) if len(loc) >= 2 else None
        where = name or ".".join(loc) or "settings"
        env = f" ({ENV_PREFIX}{name.upper()})" if name else ""
        parts.append(f"{where}{env}: {e['msg']}")
    return "invalid settings: " + "; ".join(parts)
