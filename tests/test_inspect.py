"""`authstate inspect`: decode, times, verification, lint, exit codes, never a traceback."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from authstate.cli import app
from authstate.clock import FrozenClock
from authstate.jwt import AccessTokens, b64url_encode, sign_compact
from authstate.keys import KeySet, SigningKey
from authstate.lint import humanize, relative
from tests.test_vectors_jose import PUBLISHED_RANDOM_LOOKING, RFC7515, common_secrets

runner = CliRunner()
NOW = 1_800_000_000
STRONG = "Zq3L8vR2nW5yT1xK7mB4cH9gF6dJ0sA2eU5iO8pQ3rE"


def inspect(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["inspect", *args], input=input)


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(value: Any) -> str:
        return b64url_encode(json.dumps(value).encode()).decode()

    return f"{part(header)}.{part(claims)}.{b64url_encode(signature).decode()}"


def hs256_token(secret: str, claims: dict[str, Any] | None = None) -> str:
    key = SigningKey.from_secret(secret, alg="HS256", kid="k", allow_weak=True)
    body = claims or {"iss": "i", "sub": "s", "aud": "a", "jti": "j", "iat": NOW,
                      "exp": NOW + 300}
    return sign_compact(key, {"kid": "k", "typ": "JWT"}, json.dumps(body).encode())


@pytest.fixture
def rfc_a1(tmp_path: Path) -> tuple[str, Path]:
    example = RFC7515["RFC7515_A1"]
    key = tmp_path / "a1.jwk"
    key.write_text(json.dumps({**example["key"], "alg": "HS256"}))
    return example["compact"], key


def test_rfc7515_example_verifies_with_its_key(rfc_a1: tuple[str, Path]) -> None:
    token, key = rfc_a1
    result = inspect(token, "--key", str(key), "--at", "1300819370")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert '"iss": "joe"' in out and "2011-03-22 18:43:00 UTC" in out
    assert "expires in 10 s" in out and "Signature  verified with key" in out
    assert "Result     valid" in out
    late = inspect(token, "--key", str(key), "--at", "2011-03-22T21:43:00Z")
    assert late.exit_code == 1 and "expired 3 h ago" in late.stdout


def test_rfc7515_example_without_a_pinned_clock_is_expired(rfc_a1: tuple[str, Path]) -> None:
    token, key = rfc_a1
    result = inspect(token, "--key", str(key))
    assert result.exit_code == 1
    assert "Result     invalid: expired" in result.stdout and " y " in result.stdout


def test_json_output_from_stdin(tmp_path: Path) -> None:
    example = RFC7515["RFC7515_A3"]
    key = tmp_path / "a3.jwk"
    key.write_text(json.dumps(example["key"]))
    result = inspect("-", "--key", str(key), "--at", "1300819380", "--json",
                     input=example["compact"] + "\n")
    assert result.exit_code == 1  # exp == now: expired
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["signature"]["status"] == "verified"
    assert report["signature"]["alg"] == "ES256" and report["header"] == {"alg": "ES256"}
    assert report["times"]["exp"]["relative"] == "expired 0 s ago"
    codes = {f["code"] for f in report["findings"]}
    assert {"missing_aud", "missing_jti"} <= codes and "missing_iss" not in codes


def test_secret_from_stdin_verifies_and_is_never_printed() -> None:
    token = hs256_token(STRONG)
    good = inspect(token, "--secret-stdin", "--at", str(NOW), input=STRONG + "\n")
    assert good.exit_code == 0, good.output
    assert "verified" in good.stdout and STRONG not in good.output
    wrong = inspect(token, "--secret-stdin", "--at", str(NOW), input=STRONG[::-1])
    assert wrong.exit_code == 1 and "INVALID" in wrong.stdout
    assert STRONG[::-1] not in wrong.output


def test_weak_secret_is_an_error_finding() -> None:
    token = hs256_token("secret")
    result = inspect(token, "--secret-stdin", "--json", "--at", str(NOW), input="secret")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["signature"]["status"] == "verified"
    (weak,) = [f for f in report["findings"] if f["code"] == "weak_secret"]
    assert weak["severity"] == "error" and "commonly used" in weak["message"]


def test_every_common_secret_is_flagged_by_the_lint(tmp_path: Path) -> None:
    wordlist = tmp_path / "words.txt"
    words = common_secrets()
    wordlist.write_text("\n".join(words))
    for word in words:
        token = hs256_token(word)
        extra = ["--wordlist", str(wordlist)] if word in PUBLISHED_RANDOM_LOOKING else []
        result = inspect(token, "--secret-stdin", "--json", "--at", str(NOW), *extra,
                         input=word)
        report = json.loads(result.stdout)
        assert report["signature"]["status"] == "verified", word
        assert "weak_secret" in {f["code"] for f in report["findings"]}, word
        assert result.exit_code == 1


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_invalid(alg: str) -> None:
    token = unsigned({"alg": alg}, {"sub": "admin", "exp": NOW + 60})
    result = inspect(token, "--json", "--at", str(NOW))
    assert result.exit_code == 1
    assert "alg_none" in {f["code"] for f in json.loads(result.stdout)["findings"]}


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("abc.def", "3 dot-separated parts"),
        ("a.b.c.d.e", "encrypted JWE"),
        ("eyJhbGciOiJIUzI1NiJ9.e!!.abc", "character '!' at position 1"),
        ("eyJhbGciOiJIUzI1NiJ9==.e30.abc", "'=' padding"),
        ("bm90IGpzb24.e30.abc", "header is not JSON"),
        ("WzFd.e30.abc", "header is JSON but not an object"),
        ("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.abc", "payload is not JSON"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.a", "impossible base64url length"),
        ("eyJhbGciOiJIUzI1NiJ9.e30.YR", "not canonical"),
        ("x" * 70_000, "refusing to parse"),
        ("   ", "empty"),
    ],
)
def test_malformed_tokens_get_one_line_and_exit_1(token: str, says: str) -> None:
    result = inspect(token)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("malformed token: ") and says in lines[0]
    assert "Traceback" not in result.output
    as_json = inspect(token, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "malformed_token"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    token = hs256_token(STRONG)
    key = tmp_path / "k.jwk"
    key.write_text(json.dumps(SigningKey.generate("EdDSA").private_jwk()))
    junk = tmp_path / "junk.txt"
    junk.write_text("{not json")
    for args, stdin in [
        (["--key", str(key), "--secret-stdin"], STRONG),
        (["--key", str(tmp_path / "missing.pem")], None),
        (["--key", str(junk)], None),
        (["--alg", "XS999"], None),
        (["--at", "yesterday"], None),
        (["--jwks", str(tmp_path / "missing.json")], None),
        (["--secret-stdin"], ""),
    ]:
        result = inspect(token, *args, input=stdin)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    both = inspect("-", "--secret-stdin", input="x")
    assert both.exit_code == 2 and "stdin" in both.stderr
    assert runner.invoke(app, ["inspect"]).exit_code == 2


def test_lint_findings() -> None:
    claims = {"sub": "u", "email": "alice@example.com", "contact": "+44 20 7946 0958",
              "since": "2024-01-31",
              "iat": NOW, "exp": NOW + 7200, "blob": "x" * 1200}
    token = unsigned({"alg": "HS256", "kid": "../../etc/passwd", "jku": "https://evil"},
                     claims, b"sig")
    report = json.loads(inspect(token, "--json", "--at", str(NOW)).stdout)
    codes = {f["code"]: f for f in report["findings"]}
    assert {"long_lifetime", "missing_aud", "missing_iss", "missing_jti", "personal_data",
            "large_token", "suspicious_kid", "untrusted_header"} <= set(codes)
    assert "contact" in codes["personal_data"]["message"]
    assert "email" in codes["personal_data"]["message"]
    assert "since" not in codes["personal_data"]["message"], "a date is not a phone number"
    assert codes["untrusted_header"]["severity"] == "error" and report["valid"] is False
    no_exp = json.loads(inspect(unsigned({"alg": "HS256"}, {"sub": "u"}), "--json").stdout)
    assert "no_exp" in {f["code"] for f in no_exp["findings"]} and not no_exp["valid"]


def test_not_yet_valid_is_reported_relative() -> None:
    token = hs256_token(STRONG, {"sub": "u", "nbf": NOW + 20, "exp": NOW + 600, "iat": NOW,
                                 "aud": "a", "iss": "i", "jti": "j"})
    result = inspect(token, "--at", str(NOW))
    assert result.exit_code == 1 and "not valid for another 20 s" in result.stdout


def test_own_tokens_with_jwks_file_and_url(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate("ES256", now=NOW)
    token, _ = AccessTokens(keys, issuer="https://i", audience="a", clock=clock).issue(
        "u", sid="s")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys.public_jwks()))
    result = inspect(token, "--jwks", str(path), "--at", str(NOW + 68))
    assert result.exit_code == 0, result.output
    assert "expires in 8 min 52 s" in result.stdout and keys.signer.kid in result.stdout
    with _serve(json.dumps(keys.public_jwks()).encode()) as url:
        over_http = inspect(token, "--jwks", url, "--json", "--at", str(NOW))
    assert over_http.exit_code == 0, over_http.output
    assert json.loads(over_http.stdout)["signature"]["kid"] == keys.signer.kid
    other = tmp_path / "other.json"
    other.write_text(json.dumps(KeySet.generate("ES256").public_jwks()))
    unknown = inspect(token, "--jwks", str(other), "--at", str(NOW))
    assert unknown.exit_code == 1 and "no key matches" in unknown.stdout


def test_pem_keys_and_algorithm_mismatch(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    rsa_keys = KeySet.generate("RS256", now=NOW)
    token, _ = AccessTokens(rsa_keys, issuer="i", audience="a", clock=clock).issue("u")
    public = rsa_keys.signer.public_key
    assert public is not None
    pem = tmp_path / "rsa.pub.pem"
    pem.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    ok = inspect(token, "--key", str(pem), "--at", str(NOW))
    assert ok.exit_code == 0 and "(RS256)" in ok.stdout, ok.output
    renamed = inspect(token.replace(token.split(".")[0], b64url_encode(json.dumps(
        {"alg": "RS256", "kid": "other", "typ": "at+jwt"}).encode()).decode()),
        "--key", str(pem), "--at", str(NOW))
    assert "differs from the token's" in renamed.stdout and renamed.exit_code == 1
    signing_input = unsigned({"alg": "HS256", "kid": rsa_keys.signer.kid}, {"sub": "u",
                             "exp": NOW + 60}).rsplit(".", 1)[0]
    mac = hmac.new(pem.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{b64url_encode(mac).decode()}"
    result = inspect(confused, "--key", str(pem), "--json", "--at", str(NOW))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["signature"]["code"] == "algorithm_not_allowed"
    assert "alg_mismatch" in {f["code"] for f in report["findings"]}


def test_humanized_durations() -> None:
    assert humanize(252) == "4 min 12 s"
    assert humanize(3 * 3600 + 5) == "3 h"
    assert humanize(2 * 86400 + 5 * 3600 + 7) == "2 d 5 h"
    assert humanize(0.2) == "0 s"
    assert relative("exp", NOW + 252, NOW) == "expires in 4 min 12 s"
    assert relative("exp", NOW - 3 * 3600, NOW) == "expired 3 h ago"
    assert relative("nbf", NOW + 20, NOW) == "not valid for another 20 s"
    assert relative("iat", NOW - 60, NOW) == "issued 1 min ago"


def test_the_installed_command_never_prints_a_traceback() -> None:
    for args in (["inspect", "not-a-token"], ["inspect", "a.b.c", "--key", "/nonexistent"]):
        done = subprocess.run(
            [sys.executable, "-c", "from authstate.cli import main; main()", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode in (1, 2) and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


class _Handler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: Any) -> None:
        return None


class _serve:
    def __init__(self, body: bytes) -> None:
        _Handler.body = body
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

