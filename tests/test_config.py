"""Settings: defaults, TOML, environment, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from authstate.config import Settings
from authstate.errors import ConfigurationError


def test_defaults_are_the_embedded_dev_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHSTATE_STORE", "AUTHSTATE_DEV", "AUTHSTATE_PORT", "AUTHSTATE_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.load()
    assert (s.store, s.host, s.port, s.dev) == ("sqlite:///authstate.db", "127.0.0.1", 8000, True)
    assert (s.access_token_ttl, s.refresh_grace, s.leeway) == (600, 10, 30)


def test_precedence_file_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "authstate.toml"
    config.write_text('port = 7000\nissuer = "https://file"\ndev = false\nleeway = 10\n')
    monkeypatch.setenv("AUTHSTATE_ISSUER", "https://env")
    monkeypatch.setenv("AUTHSTATE_ACCESS_TOKEN_TTL", "300")
    s = Settings.load(config, port=None, leeway=5)
    assert (s.port, s.issuer, s.dev, s.leeway, s.access_token_ttl) == (7000, "https://env", False, 5, 300)


def test_long_access_tokens_need_the_override() -> None:
    with pytest.raises(ConfigurationError, match="allow_long_access_tokens"):
        Settings.load(access_token_ttl=7200)
    assert Settings.load(access_token_ttl=7200, allow_long_access_tokens=True).access_token_ttl == 7200


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"leeway": 3600}, "AUTHSTATE_LEEWAY"),
        ({"port": 0}, "AUTHSTATE_PORT"),
        ({"bogus": 1}, "AUTHSTATE_BOGUS"),
        ({"session_idle_timeout": 90000}, "session_idle_timeout"),
    ],
)
def test_bad_settings_name_the_variable(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        Settings.load(**kwargs)


def test_bad_toml_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Settings.load(bad)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Settings.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("given", ["debug", "Debug", "DEBUG", "warning", "Error"])
def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    """Issue 10 §4: ``AUTHSTATE_LOG_LEVEL=debug`` was refused; uvicorn takes any case."""
    monkeypatch.setenv("AUTHSTATE_LOG_LEVEL", given)
    assert Settings.load().log_level == given.upper()
    monkeypatch.delenv("AUTHSTATE_LOG_LEVEL")
    assert Settings.load(log_level=given).log_level == given.upper()


def test_an_unknown_log_level_is_still_refused() -> None:
    with pytest.raises(ConfigurationError, match="AUTHSTATE_LOG_LEVEL"):
        Settings.load(log_level="verbose")


def test_refresh_reuse_window_default_and_bounds() -> None:
    assert Settings.load().refresh_reuse_window == 3 * 86400
    with pytest.raises(ConfigurationError, match="AUTHSTATE_REFRESH_REUSE_WINDOW"):
        Settings.load(refresh_reuse_window=10)
    with pytest.raises(ConfigurationError, match="refresh_grace"):
        Settings.load(refresh_reuse_window=60, refresh_grace=120)


def test_metrics_token_is_a_secret_of_some_length() -> None:
    token = "m3tr1cs-" + "x" * 24
    settings = Settings.load(metrics_token=token)
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == token
    assert token not in repr(settings) and token not in str(settings.model_dump())
    with pytest.raises(ConfigurationError, match="AUTHSTATE_METRICS_TOKEN") as caught:
        Settings.load(metrics_token="short-s3cret")
    assert "short-s3cret" not in str(caught.value)
