"""One settings object for the service, the CLI and the bench.

Every field has an environment variable ``AUTHSTATE_<FIELD>`` (listed in the README) and
can be set in a TOML file (``authstate serve --config FILE``). Precedence, lowest first:
defaults, the TOML file, the environment, explicit overrides (CLI flags). The library API
itself never reads the environment: ``AuthState`` takes a ``Settings`` you build.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from authstate.errors import ConfigurationError

LONG_LIFETIME = 3600  # over an hour, an access token is a long-lived credential
LEEWAY_MAX = 300  # RFC 7519 §4.1.4 allows "some small leeway"; more hides clock bugs
# Three days: a client away over a weekend still trips reuse detection when it comes back
# to find its token spent by a thief, while spent records (~1 KB per rotation) no longer
# pile up for the whole 14-day refresh TTL.
REUSE_WINDOW = 3 * 86400
METRICS_TOKEN_MIN = 16  # a bearer secret, not a password: long enough not to be guessed


class Settings(BaseSettings):
    """Validated once at start-up; grouped by concern below."""

    model_config = SettingsConfigDict(env_prefix="AUTHSTATE_", extra="forbid", frozen=True)

    # where state lives
    store: str = "sqlite:///authstate.db"
    namespace: str = Field("authstate", pattern=r"^[a-z][a-z0-9_]{0,40}$")

    # the service
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    dev: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)

    # tokens
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "authstate"
    key_algorithm: Literal[
        "EdDSA", "ES256", "RS256", "PS256", "HS256", "HS384", "HS512"
    ] = "EdDSA"
    access_token_ttl: int = Field(600, ge=10)
    allow_long_access_tokens: bool = False
    leeway: int = Field(30, ge=0, le=LEEWAY_MAX)

    # signing keys: how long a rotated-in key is published before it signs (at least the
    # JWKS max-age, so caches hold it first), and how often each instance polls the store
    # for a key change (the bus, where there is one, is faster; this is the backstop)
    jwks_max_age: int = Field(300, ge=0, le=86400)
    key_prepublish: int = Field(600, ge=0, le=7 * 86400)
    key_poll_interval: float = Field(5.0, ge=0.05, le=300)
    # private keys sealed at rest (AES-256-GCM) under these KEKs ("NEW[,OLD...]", base64url
    # of 32 random bytes each), given inline or in a file; unset: plain JWKs in the store
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None

    # refresh tokens
    refresh_ttl: int = Field(14 * 86400, ge=60)
    refresh_family_ttl: int = Field(30 * 86400, ge=60)
    refresh_grace: int = Field(10, ge=0, le=300)
    # How long a spent refresh token is remembered to detect its reuse (see README).
    refresh_reuse_window: int = Field(REUSE_WINDOW, ge=60)

    # OAuth: the legacy password grant (RFC 9700 §2.4 says MUST NOT); false leaves the
    # authorization code flow only
    password_grant: bool = True

    # sessions
    session_idle_timeout: int = Field(30 * 60, ge=60)
    session_absolute_timeout: int = Field(12 * 3600, ge=60)
    session_touch_interval: int = Field(60, ge=0)

    # revocation
    revocation_denylist: bool = True
    revocation_token_version: bool = True
    revocation_session_bound: bool = True
    push_revocation: bool = True
    bus: str | None = None
    bus_fallback: Literal["store", "reject"] = "store"

    # login throttling
    throttle_account_limit: int = Field(5, ge=1)
    throttle_ip_limit: int = Field(50, ge=1)
    throttle_window: int = Field(15 * 60, ge=1)

    # passwords (argon2id; defaults are OWASP's 19 MiB, t=2, p=1; lower only for tests)
    password_time_cost: int = Field(2, ge=1, le=20)
    password_memory_kib: int = Field(19 * 1024, ge=8, le=4 * 1024 * 1024)
    password_parallelism: int = Field(1, ge=1, le=16)

    # the HTTP service's cookies and proxies
    cookie_name: str = Field("authstate_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    forwarded_allow_ips: str = ""

    # operations
    audit_retention_days: int = Field(90, ge=1)
    metrics: bool = True
    # Bearer token that GET /metrics requires when set (compared in constant time).
    metrics_token: SecretStr | None = None
    # HOST:PORT of a separate listener serving only /metrics (then the main port has none).
    metrics_address: str | None = Field(
        None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$"
    )
    cleanup_interval: int = Field(60, ge=1)

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

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.access_token_ttl > LONG_LIFETIME and not self.allow_long_access_tokens:
            raise ValueError(
                f"access_token_ttl over {LONG_LIFETIME} s needs allow_long_access_tokens=true"
            )
        if self.session_idle_timeout > self.session_absolute_timeout:
            raise ValueError("session_idle_timeout must not exceed session_absolute_timeout")
        if self.key_prepublish < self.jwks_max_age:
            raise ValueError(
                "key_prepublish must be at least jwks_max_age: a key must be in every "
                "cached JWKS before it signs"
            )
        if self.refresh_ttl > self.refresh_family_ttl:
            raise ValueError("refresh_ttl must not exceed refresh_family_ttl")
        if self.refresh_reuse_window < self.refresh_grace:
            raise ValueError("refresh_reuse_window must not be shorter than refresh_grace")
        return self

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Defaults < TOML file < ``AUTHSTATE_*`` environment < ``overrides`` (None ignored)."""
        try:
            from_file: dict[str, Any] = {}
            if config_file is not None:
                with Path(config_file).open("rb") as f:
                    from_file = tomllib.load(f)
                from_file = from_file.get("authstate", from_file)
            from_env = cls()
            env_set = {name: getattr(from_env, name) for name in from_env.model_fields_set}
            given = {k: v for k, v in overrides.items() if v is not None}
            return cls(**{**from_file, **env_set, **given})
        except OSError as error:
            raise ConfigurationError(f"cannot read config file: {error.strerror}") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError(f"config file is not valid TOML: {error}") from error
        except ValidationError as error:
            raise ConfigurationError(_describe(error)) from error


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(x) for x in e["loc"]) or "settings"
        env = f" (AUTHSTATE_{where.upper()})" if where != "settings" else ""
        parts.append(f"{where}{env}: {e['msg']}")
    return "invalid settings: " + "; ".join(parts)
