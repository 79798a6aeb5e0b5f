"""``authstate serve`` settings, and ``authstate users`` / ``clients`` in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authstate.cli import app
from authstate.cli.serve import load_settings

FAST = {"AUTHSTATE_PASSWORD_TIME_COST": "1", "AUTHSTATE_PASSWORD_MEMORY_KIB": "1024"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("AUTHSTATE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings(None)
    assert s.store.url == "sqlite:///authstate.db"
    # development mode is off unless asked for, so the issuer follows the address as https
    assert (s.service.host, s.service.port, s.service.dev) == ("127.0.0.1", 8000, False)
    assert s.tokens.issuer == "https://127.0.0.1:8000"
    assert s.tokens.key_algorithm == "RS256"  # OIDC's mandatory ID token algorithm
    assert load_settings(None, dev=True).tokens.issuer == "http://127.0.0.1:8000"


def test_flags_beat_environment_beats_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "authstate.toml"
    config.write_text('store = "memory://"\nport = 9001\naccess_token_ttl = 120\nlog_level = "DEBUG"\n')
    clean_env.setenv("AUTHSTATE_PORT", "9002")
    clean_env.setenv("AUTHSTATE_REFRESH_GRACE", "5")
    clean_env.setenv("AUTHSTATE_DEV", "false")
    s = load_settings(config)
    assert (s.store.url, s.service.port, s.tokens.access_ttl, s.refresh.grace, s.service.dev) == (
        "memory://", 9002, 120, 5, False)
    assert s.tokens.issuer == "https://127.0.0.1:9002"  # follows the address when not configured
    s = load_settings(config, port=9003, host="0.0.0.0", store="sqlite:///x.db", dev=True, log_level="warning")
    assert (s.service.port, s.service.host, s.store.url, s.service.dev, s.service.log_level) == (
        9003, "0.0.0.0", "sqlite:///x.db", True, "WARNING")
    assert s.tokens.issuer == "http://0.0.0.0:9003"
    assert load_settings(config, issuer="https://auth.example.com").tokens.issuer == "https://auth.example.com"
    clean_env.setenv("AUTHSTATE_ISSUER", "https://env.example.com")
    assert load_settings(None, port=1234).tokens.issuer == "https://env.example.com"


def test_serve_refuses_bad_settings_in_one_line(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--port", "70000"])
    assert result.exit_code == 2 and "port" in result.output and "Traceback" not in result.output
    missing = runner.invoke(app, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "config file" in missing.output
    bad_store = runner.invoke(app, ["serve", "--store", "nosuch://x"])
    assert bad_store.exit_code == 1 and "cannot open the store" in bad_store.output
    assert "Traceback" not in bad_store.output


def test_users_add_and_list(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in FAST.items():
        clean_env.setenv(name, value)
    store = f"sqlite:///{tmp_path / 'a.db'}"
    runner = CliRunner()
    added = runner.invoke(app, ["users", "add", "Root@Example.com", "--admin", "--password-stdin",
                                "--store", store], input="a fine long password\n")
    assert added.exit_code == 0, added.output
    assert "created admin root@example.com" in added.output
    assert "a fine long password" not in added.output
    plain = runner.invoke(app, ["users", "add", "bob@example.com", "--password-stdin", "--store", store, "--json"],
                          input="another password\n")
    assert plain.exit_code == 0 and json.loads(plain.stdout)["is_admin"] is False
    dup = runner.invoke(app, ["users", "add", "bob@example.com", "--password-stdin", "--store", store],
                        input="whatever password\n")
    assert dup.exit_code == 1 and "already exists" in dup.output
    weak = runner.invoke(app, ["users", "add", "weak@example.com", "--password-stdin", "--store", store], input="short\n")
    assert weak.exit_code == 1 and "at least 8" in weak.output
    listed = runner.invoke(app, ["users", "list", "--store", store, "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["email"], r["is_admin"]) for r in rows] == [("root@example.com", True), ("bob@example.com", False)]
    assert "password" not in listed.stdout
    table = runner.invoke(app, ["users", "list", "--store", store])
    assert "root@example.com" in table.stdout and "2 user(s)" in table.stdout


def test_users_add_needs_a_terminal_or_stdin_flag(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["users", "add", "x@example.com", "--store", f"sqlite:///{tmp_path / 'b.db'}"],
                                input="password from a pipe\n")
    assert result.exit_code == 2 and "--password-stdin" in result.output


def test_clients_add_shows_the_secret_once(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    added = runner.invoke(app, ["clients", "add", "gateway", "--store", store, "--json"])
    assert added.exit_code == 0, added.output
    created = json.loads(added.stdout)
    assert created["client_id"].startswith("c_") and len(created["client_secret"]) >= 43
    human = runner.invoke(app, ["clients", "add", "billing", "--store", store])
    assert "client_secret:" in human.stdout and "shown only now" in human.output
    listed = runner.invoke(app, ["clients", "list", "--store", store, "--json"])
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["gateway", "billing"]
    assert created["client_secret"] not in listed.stdout
    bad = runner.invoke(app, ["clients", "add", "bad;name", "--store", store])
    assert bad.exit_code == 1


def test_readme_lists_every_setting() -> None:
    from authstate.config import FLAT

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [name for name in FLAT if f"`AUTHSTATE_{name.upper()}`" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"
