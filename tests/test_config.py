"""Settings: grouped and explicit in the library; environment and TOML read at the edge only.

The ``AUTHSTATE_*`` variables in the README's configuration table are a contract: each is
checked here, parsed from the table itself, through ``load_settings`` (what ``serve`` and
the CLI call) into its group.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from authstate.config import (
    FLAT,
    ServiceSettings,
    Settings,
    StoreSettings,
    TokenSettings,
    load_settings,
)
from authstate.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]


def readme_variables() -> list[str]:
    """The variables of the README's configuration table, in its order."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `AUTHSTATE_([A-Z0-9_]+)` \|", table, flags=re.MULTILINE)


# For each variable: a value as the environment gives it (a string) and what it becomes.
# Each differs from the default, so a variable that maps nowhere fails its test.
SAMPLES: dict[str, tuple[str, Any]] = {
    "store": ("memory://", "memory://"),
    "namespace": ("tenant_a", "tenant_a"),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9000", 9000),
    "dev": ("true", True),
    "log_level": ("debug", "DEBUG"),
    "max_body_bytes": ("2048", 2048),
    "issuer": ("https://auth.example.com", "https://auth.example.com"),
    "audience": ("billing", "billing"),
    "key_algorithm": ("ES256", "ES256"),
    "access_token_ttl": ("300", 300),
    "allow_long_access_tokens": ("true", True),
    "leeway": ("10", 10),
    "jwks_max_age": ("120", 120),
    "key_prepublish": ("900", 900),
    "key_encryption_key": ("k" * 43, SecretStr("k" * 43)),
    "key_encryption_key_file": ("/run/secrets/kek", Path("/run/secrets/kek")),
    "key_poll_interval": ("2.5", 2.5),
    "refresh_ttl": ("86400", 86400),
    "refresh_family_ttl": ("1728000", 1728000),
    "refresh_grace": ("20", 20),
    "refresh_reuse_window": ("86400", 86400),
    "session_idle_timeout": ("600", 600),
    "session_absolute_timeout": ("3600", 3600),
    "session_touch_interval": ("30", 30),
    "session_cache_seconds": ("4.5", 4.5),
    "revocation_denylist": ("false", False),
    "revocation_token_version": ("false", False),
    "revocation_session_bound": ("false", False),
    "push_revocation": ("false", False),
    "password_grant": ("false", False),
    "bus": ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/1"),
    "bus_fallback": ("reject", "reject"),
    "user_cache_seconds": ("2.5", 2.5),
    "throttle_account_limit": ("3", 3),
    "throttle_ip_limit": ("30", 30),
    "throttle_window": ("600", 600),
    "password_time_cost": ("3", 3),
    "password_memory_kib": ("65536", 65536),
    "password_parallelism": ("2", 2),
    "cookie_name": ("sid", "sid"),
    "forwarded_allow_ips": ("10.0.0.1", "10.0.0.1"),
    "audit_retention_days": ("30", 30),
    "metrics": ("false", False),
    "metrics_token": ("m" * 24, SecretStr("m" * 24)),
    "metrics_address": ("10.0.0.5:9100", "10.0.0.5:9100"),
    "cleanup_interval": ("120", 120),
}


def value_at(settings: Settings, name: str) -> Any:
    group, field = FLAT[name]
    return getattr(getattr(settings, group), field)


def test_the_readme_table_the_loader_and_the_samples_name_the_same_variables() -> None:
    documented = [name.lower() for name in readme_variables()]
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    assert set(documented) == set(FLAT), "README table and settings disagree"
    assert set(SAMPLES) == set(FLAT)


@pytest.mark.parametrize("variable", readme_variables())
def test_every_documented_variable_reaches_its_setting(variable: str) -> None:
    name = variable.lower()
    given, expected = SAMPLES[name]
    settings = load_settings(env={f"AUTHSTATE_{variable}": given})
    assert value_at(settings, name) == expected
    assert value_at(settings, name) != value_at(Settings(), name), "the sample is the default"
    assert Settings.from_flat(**{name: given}) == settings


@pytest.mark.parametrize("variable", readme_variables())
def test_every_documented_variable_is_a_toml_key(variable: str, tmp_path: Path) -> None:
    name = variable.lower()
    given, expected = SAMPLES[name]
    config = tmp_path / "authstate.toml"
    config.write_text(f"[authstate]\n{name} = {given!r}\n".replace("'", '"'))
    assert value_at(load_settings(config, env={}), name) == expected


def test_library_defaults_are_production_safe() -> None:
    s = Settings()
    assert s.service.dev is False, "development mode must be asked for"
    assert (s.store.url, s.service.host, s.service.port) == ("sqlite:///authstate.db", "127.0.0.1", 8000)
    assert (s.tokens.access_ttl, s.refresh.grace, s.tokens.leeway) == (600, 10, 30)
    assert load_settings(env={}).service.dev is False


def test_the_library_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (given, _) in SAMPLES.items():
        monkeypatch.setenv(f"AUTHSTATE_{name.upper()}", given)
    assert Settings() == Settings.from_flat() == Settings(store=StoreSettings())
    assert Settings().service.dev is False
    assert Settings.from_flat(leeway=5).tokens.leeway == 5
    assert Settings.from_flat(leeway=5).store.url == "sqlite:///authstate.db"


def test_grouped_keywords_build_settings() -> None:
    s = Settings(
        store=StoreSettings(url="memory://", namespace="t1"),
        service=ServiceSettings(dev=True),
        tokens=TokenSettings(leeway=0, issuer="https://as.example"),
    )
    assert s == Settings.from_flat(store="memory://", namespace="t1", dev=True, leeway=0,
                                   issuer="https://as.example")
    assert Settings.from_flat(**s.flat()) == s
    assert s.replace(port=9001).service == ServiceSettings(dev=True, port=9001)
    with pytest.raises(ValidationError):
        s.service.dev = False  # type: ignore[misc]  # frozen
    with pytest.raises(ValidationError):
        Settings(tokens=TokenSettings(leeway=301))
    with pytest.raises(ValidationError):
        ServiceSettings(bogus=1)  # type: ignore[call-arg]  # extra=forbid


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "authstate.toml"
    config.write_text('port = 7000\nissuer = "https://file"\ndev = true\nleeway = 10\n'
                      'audience = "file"\n')
    env = {"AUTHSTATE_ISSUER": "https://env", "AUTHSTATE_ACCESS_TOKEN_TTL": "300",
           "AUTHSTATE_LEEWAY": "20", "AUTHSTATE_TEST_REDIS_URL": "redis://ignored"}
    s = load_settings(config, env=env, port=None, leeway=5)
    assert (s.service.port, s.tokens.issuer, s.service.dev) == (7000, "https://env", True)
    assert (s.tokens.leeway, s.tokens.access_ttl, s.tokens.audience) == (5, 300, "file")
    assert s.refresh.grace == 10  # untouched: the default


def test_toml_tables_per_group(tmp_path: Path) -> None:
    config = tmp_path / "authstate.toml"
    config.write_text('[tokens]\nleeway = 7\n[sessions]\nidle_timeout = 600\n'
                      '[store]\nurl = "memory://"\n')
    s = load_settings(config, env={"AUTHSTATE_SESSION_IDLE_TIMEOUT": "900"})
    assert (s.tokens.leeway, s.sessions.idle_timeout, s.store.url) == (7, 900, "memory://")
    config.write_text("[tokens]\nbogus = 1\n")
    with pytest.raises(ConfigurationError, match=r"tokens\.bogus"):
        load_settings(config, env={})


def test_repr_masks_secrets_and_url_passwords() -> None:
    token, kek = "m3tr1cs-" + "x" * 24, "K" * 43
    s = Settings.from_flat(
        store="postgresql://authstate:db-pa55word@db.internal/auth",
        bus="redis://:bus-pa55word@cache.internal:6379/0",
        metrics_token=token, key_encryption_key=kek,
    )
    for shown in (repr(s), str(s), repr(s.store), str(s.revocation)):
        for secret in (token, kek, "db-pa55word", "bus-pa55word"):
            assert secret not in shown
    assert "postgresql://authstate:***@db.internal/auth" in repr(s)
    assert "redis://:***@cache.internal:6379/0" in repr(s)
    assert s.store.url == "postgresql://authstate:db-pa55word@db.internal/auth"  # the value itself
    assert s.service.metrics_token is not None
    assert s.service.metrics_token.get_secret_value() == token
    assert token not in str(s.model_dump())


def test_long_access_tokens_need_the_override() -> None:
    with pytest.raises(ConfigurationError, match="allow_long_access_tokens"):
        Settings.from_flat(access_token_ttl=7200)
    s = Settings.from_flat(access_token_ttl=7200, allow_long_access_tokens=True)
    assert s.tokens.access_ttl == 7200


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"leeway": 3600}, "AUTHSTATE_LEEWAY"),
        ({"port": 0}, "AUTHSTATE_PORT"),
        ({"bogus": 1}, "AUTHSTATE_BOGUS"),
        ({"namespace": "Bad-Name"}, "AUTHSTATE_NAMESPACE"),
        ({"session_idle_timeout": 90000}, "session_idle_timeout"),
    ],
)
def test_bad_settings_name_the_variable(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        Settings.from_flat(**values)
    env = {f"AUTHSTATE_{k.upper()}": str(v) for k, v in values.items()}
    if "bogus" not in values:  # an unknown variable is someone else's, not an error
        with pytest.raises(ConfigurationError, match=needle):
            load_settings(env=env)


def test_bad_toml_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize("given", ["debug", "Debug", "DEBUG", "warning", "Error"])
def test_log_level_in_any_case(given: str) -> None:
    """Issue 10 §4: ``AUTHSTATE_LOG_LEVEL=debug`` was refused; uvicorn takes any case."""
    assert load_settings(env={"AUTHSTATE_LOG_LEVEL": given}).service.log_level == given.upper()
    assert load_settings(env={}, log_level=given).service.log_level == given.upper()


def test_an_unknown_log_level_is_still_refused() -> None:
    with pytest.raises(ConfigurationError, match="AUTHSTATE_LOG_LEVEL"):
        Settings.from_flat(log_level="verbose")


def test_refresh_reuse_window_default_and_bounds() -> None:
    assert Settings().refresh.reuse_window == 3 * 86400
    with pytest.raises(ConfigurationError, match="AUTHSTATE_REFRESH_REUSE_WINDOW"):
        Settings.from_flat(refresh_reuse_window=10)
    with pytest.raises(ConfigurationError, match="refresh_grace"):
        Settings.from_flat(refresh_reuse_window=60, refresh_grace=120)


def test_metrics_token_is_a_secret_of_some_length() -> None:
    with pytest.raises(ConfigurationError, match="AUTHSTATE_METRICS_TOKEN") as caught:
        Settings.from_flat(metrics_token="short-s3cret")
    assert "short-s3cret" not in str(caught.value)


def test_run_py_serve_asks_for_development_mode(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    monkeypatch.delenv("AUTHSTATE_DEV", raising=False)
    assert run.dev_args([]) == ["--dev"]
    assert "--dev" in capsys.readouterr().err, "run.py says that it asks for dev mode"
    assert run.dev_args(["--no-dev"]) == [] and run.dev_args(["--dev"]) == []
    monkeypatch.setenv("AUTHSTATE_DEV", "false")
    assert run.dev_args([]) == []
