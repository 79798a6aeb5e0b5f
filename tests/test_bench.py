"""``authstate bench``: a real (tiny) run through the CLI, and the pieces that make a run
reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authstate.bench.plan import BenchConfig, model_specs, parse_algorithms, parse_duration
from authstate.bench.runner import rotated
from authstate.bench.stats import percentile, summarise
from authstate.cli import app
from authstate.errors import InvalidInput

FAMILIES = {"session", "jwt", "jwt+cache", "jwt+denylist", "jwt+push", "opaque", "opaque+introspection"}


def test_tiny_run_writes_json_with_figures_for_every_model_and_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["bench", "--duration", "60ms", "--concurrency", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "session/memory" in result.output
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")

    assert data["schema"] == "authstate-bench/1"
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["python"].startswith("3.")
    assert machine["libraries"]["pyjwt"]
    assert data["config"]["rounds"] >= 2

    models = {m["name"]: m for m in data["models"]}
    assert {"session/memory", "session/sqlite"} <= set(models)
    assert set(models) | set(data["skipped"]) == {
        s.name for s in model_specs(BenchConfig(stores=("memory://", "sqlite:///x")))
    }
    for name, m in models.items():
        assert m["family"] in FAMILIES
        p = m["in_process"]
        assert 0 < p["median_us"] <= p["p99_us"], name
        assert p["throughput_rps"] > 0 and p["samples"] > 0 and p["rounds"] == 5, name
        h = m["http"]
        assert h is not None and h["throughput_rps"] > 0 and 0 < h["median_us"] <= h["p99_us"], name
        assert m["http_errors"] == 0, name
        assert m["wire"]["bytes"] > 0 and m["wire"]["per_1000_requests"] == 1000 * m["wire"]["bytes"]
        assert m["wire"]["header"] in ("Cookie", "Authorization")
        r = m["revocation"]
        assert r["kind"] in ("immediate", "push", "lifetime"), name
        if r["kind"] == "lifetime":
            assert r["max_s"] == data["config"]["access_token_ttl_s"]
        else:
            assert r["samples"] > 0, name
        assert m["state"]["bytes_per_user"] >= 0 and m["state"]["what"]
        # permission change → refused: measured where a change reaches the credential,
        # the token lifetime (not waited for) where nothing carries it to a JWT
        c = m["permission"]
        if m["family"] in ("jwt", "jwt+cache", "jwt+denylist"):
            assert c["kind"] == "lifetime" and c["samples"] == 0, name
            assert c["max_s"] == data["config"]["access_token_ttl_s"], name
        elif m["family"] != "opaque+introspection":
            assert c["samples"] == data["config"]["revocation_samples"], name
            assert 0 <= c["median_s"] <= c["p99_s"] <= c["max_s"] < 5, name
    assert "permission change" in result.output and "token lifetime (" in result.output
    for family in ("session",):
        assert all(m["state"]["bytes_per_user"] > 0 for m in models.values() if m["family"] == family)
        assert all(m["revocation"]["max_s"] == 0 for m in models.values() if m["family"] == family)


def test_rounds_rotate_so_every_model_runs_first_and_last() -> None:
    items = ["a", "b", "c", "d"]
    orders = [rotated(items, r, 4) for r in range(4)]
    assert all(sorted(o) == items for o in orders)
    assert {o[0] for o in orders} == set(items)
    assert {o[-1] for o in orders} == set(items)
    twelve = list(range(12))
    positions = [rotated(twelve, r, 3).index(0) for r in range(3)]
    assert positions == [0, 8, 4]  # early, late, middle


def test_summary_is_the_median_of_rounds_with_its_spread() -> None:
    figures = summarise([3000, 1000, 2000, 100_000], [90.0, 100.0, 110.0])
    assert figures.median_us == 3.0  # nearest rank of four samples
    assert figures.p99_us == 100.0
    assert figures.throughput_rps == 100.0
    assert figures.spread_pct == 20.0
    assert percentile([], 0.5) == 0.0


def test_durations_and_algorithms_are_parsed_strictly() -> None:
    assert parse_duration("10s") == 10.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1m") == 60.0
    assert parse_duration("2") == 2.0
    for bad in ("ten", "0s", "-1s", "5h"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)
    assert parse_algorithms("EdDSA, HS256") == ("EdDSA", "HS256")
    with pytest.raises(InvalidInput):
        parse_algorithms("none")


def test_quick_is_short_but_still_interleaved() -> None:
    quick = BenchConfig(stores=()).as_quick()
    assert quick.rounds >= 3 and quick.duration * 2 * 12 < 20


def test_bad_options_exit_with_usage_status() -> None:
    result = CliRunner().invoke(app, ["bench", "--duration", "forever"])
    assert result.exit_code == 2


def test_chart_without_matplotlib_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from authstate.bench.chart import draw
    from authstate.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError) as caught:
        draw(None, tmp_path / "results.png")  # type: ignore[arg-type]
    assert "pip install 'authstate[bench]'" in caught.value.message
    assert not (tmp_path / "results.png").exists()
