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
from authstate.jose.jwk import SigningKey
from authstate.jose.jws import b64url_encode, sign_compact
from authstate.keystore import KeySet
from authstate.lint import humanize, relative
from authstate.tokens.access import AccessTokens
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



# --- issue 10 §5: an unchecked token is never called valid ----------------------------

GPL_SECRETS = Path(__file__).parent / "vectors" / "jwt_tool_jwt-common.txt"  # GPL-3.0, test data


def signed_with(secret: bytes | str, alg: str = "HS256", claims: dict[str, Any] | None = None,
                kid: str = "k") -> str:
    key = SigningKey.from_secret(secret, alg=alg, kid=kid, allow_weak=True)
    body = claims or {"iss": "i", "sub": "s", "aud": "a", "jti": "j", "iat": NOW,
                      "exp": NOW + 300}
    return sign_compact(key, {"kid": kid, "typ": "JWT"}, json.dumps(body).encode())


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as a shell script would run it."""
    return subprocess.run(
        [sys.executable, "-c", "from authstate.cli import main; main()", "inspect", *args],
        capture_output=True, text=True, timeout=60, check=False, input=stdin,
    )


def test_a_token_without_a_key_is_unverified_not_valid() -> None:
    token = hs256_token(STRONG)  # a strong secret: nothing to guess, nothing wrong
    shell = run_cli(token, "--at", str(NOW))  # `authstate inspect "$T" && trust`
    assert shell.returncode == 3, shell.stdout + shell.stderr
    (verdict,) = [line for line in shell.stdout.splitlines() if line.startswith("Result")]
    assert verdict.startswith("Result     unverified: the signature was not checked")
    assert "Signature  NOT CHECKED" in shell.stdout
    as_json = inspect(token, "--json", "--at", str(NOW))
    assert as_json.exit_code == 3
    report = json.loads(as_json.stdout)
    assert report["valid"] is False and report["signature_checked"] is False
    assert report["verdict"] == "unverified" and report["signature"]["status"] == "unchecked"
    assert report["claims"]["sub"] == "s"  # still decoded and shown
    # an asymmetric token without a key: nothing to guess either
    es = AccessTokens(KeySet.generate("ES256", now=NOW), issuer="i", audience="a",
                      clock=FrozenClock(NOW)).issue("u")[0]
    assert inspect(es, "--at", str(NOW)).exit_code == 3


def test_only_a_verified_token_exits_0() -> None:
    token = hs256_token(STRONG)
    good = inspect(token, "--secret-stdin", "--json", "--at", str(NOW), input=STRONG)
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    assert report["valid"] is True and report["verdict"] == "valid"
    assert report["signature_checked"] is True
    wrong = inspect(token, "--secret-stdin", "--json", "--at", str(NOW), input=STRONG[1:])
    assert wrong.exit_code == 1
    assert json.loads(wrong.stdout)["verdict"] == "invalid"
    assert json.loads(wrong.stdout)["signature_checked"] is True
    text = inspect(token, "--secret-stdin", "--at", str(NOW), input=STRONG)
    assert "Signature  verified with the secret from stdin (HS256)" in text.stdout
    assert "Result     valid" in text.stdout
    unsigned_expired = hs256_token(STRONG, {"sub": "u", "iat": NOW - 900, "exp": NOW - 600})
    assert inspect(unsigned_expired, "--at", str(NOW)).exit_code == 1  # wrong whatever the key


def test_every_secret_of_an_attack_list_is_guessed_with_wordlist() -> None:
    words = GPL_SECRETS.read_bytes().split(b"\n")
    words = [w for w in words if w]
    assert len(words) == 95
    for number, word in enumerate(words):
        alg = ("HS256", "HS384", "HS512")[number % 3]
        token = signed_with(word, alg)
        result = inspect(token, "--json", "--at", str(NOW), "--wordlist", str(GPL_SECRETS))
        assert result.exit_code == 1, word
        report = json.loads(result.stdout)
        assert report["verdict"] == "invalid" and report["valid"] is False, word
        assert report["signature"] == {"status": "cracked", "alg": alg,
                                       "secret": word.decode()}, word
        (finding,) = [f for f in report["findings"] if f["code"] == "weak_secret"]
        assert finding["severity"] == "error" and repr(word.decode()) in finding["message"]
    text = inspect(signed_with(words[-1]), "--at", str(NOW), "--wordlist", str(GPL_SECRETS))
    assert "Signature  FORGEABLE" in text.stdout and repr(words[-1].decode()) in text.stdout
    assert "Result     invalid" in text.stdout


def test_the_shipped_list_guesses_common_secrets_without_a_wordlist() -> None:
    for word in ("secret", "your-256-bit-secret", "changeme", "keyboard cat", "shhhhh",
                 "password123"):
        result = inspect(signed_with(word), "--json", "--at", str(NOW))
        assert result.exit_code == 1, word
        report = json.loads(result.stdout)
        assert report["signature"]["status"] == "cracked", word
        assert report["signature"]["secret"] == word
        assert any(f["code"] == "weak_secret" and repr(word) in f["message"]
                   for f in report["findings"])
    # a secret only on the attack list is not guessed without it: unverified, exit 3
    assert inspect(signed_with("My super secret key!"), "--at", str(NOW)).exit_code == 3


def test_the_shipped_list_is_not_the_gpl_list() -> None:
    from authstate.guessable_secrets import GUESSABLE_SECRETS

    attack = set(GPL_SECRETS.read_text("utf-8").splitlines())
    shared_long = {w for w in GUESSABLE_SECRETS if len(w) > 12 and w in attack}
    # beyond everyday words, only secrets published as library defaults
    assert shared_long <= {"your-256-bit-secret", "your-384-bit-secret",
                           "your-512-bit-secret", "shhhhhhared-secret"}
    assert len(set(GUESSABLE_SECRETS) & attack) < len(attack) // 3
    assert len(GUESSABLE_SECRETS) < 500  # every inspection pays for it


@pytest.mark.parametrize(
    ("args", "verdict", "code"),
    [
        (["--issuer", "i", "--audience", "a"], "valid", None),
        (["--issuer", "https://evil"], "invalid", "issuer_mismatch"),
        (["--audience", "b"], "invalid", "audience_mismatch"),
        (["--audience", "api2"], "valid", None),  # aud is a list holding it
    ],
)
def test_issuer_and_audience(args: list[str], verdict: str, code: str | None) -> None:
    claims = {"iss": "i", "sub": "s", "aud": ["a", "api2"], "jti": "j", "iat": NOW,
              "exp": NOW + 300}
    token = hs256_token(STRONG, claims)
    result = inspect(token, "--secret-stdin", "--json", "--at", str(NOW), *args,
                     input=STRONG)
    report = json.loads(result.stdout)
    assert report["verdict"] == verdict
    assert result.exit_code == {"valid": 0, "invalid": 1}[verdict]
    codes = {f["code"] for f in report["findings"]}
    assert code is None or code in codes
    # without the key a matching issuer proves nothing; a wrong one is still wrong
    unkeyed = inspect(token, "--json", "--at", str(NOW), *args)
    assert unkeyed.exit_code == (3 if verdict == "valid" else 1)


def test_a_missing_audience_or_issuer_is_a_mismatch() -> None:
    token = hs256_token(STRONG, {"sub": "s", "jti": "j", "iat": NOW, "exp": NOW + 300})
    result = inspect(token, "--secret-stdin", "--json", "--at", str(NOW), "--issuer", "i",
                     "--audience", "a", input=STRONG)
    assert result.exit_code == 1
    codes = {f["code"] for f in json.loads(result.stdout)["findings"]}
    assert {"issuer_mismatch", "audience_mismatch"} <= codes


def test_a_jwe_shows_its_protected_header_and_is_unverified() -> None:
    protected = {"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "enc-1"}
    head = b64url_encode(json.dumps(protected).encode()).decode()
    jwe = ".".join([head, "OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmK",
                    "48V1_ALb6US04U3b", "5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4",
                    "XFBoMYUZodetZdvTiFvSkQ"])
    result = inspect(jwe)
    assert result.exit_code == 3, result.output
    assert '"enc": "A256GCM"' in result.stdout and '"kid": "enc-1"' in result.stdout
    assert "cannot be decrypted or verified here" in result.stdout
    report = json.loads(inspect(jwe, "--json").stdout)
    assert report["kind"] == "jwe" and report["header"] == protected
    assert report["valid"] is False and report["signature_checked"] is False
    assert report["verdict"] == "unverified"
    broken = inspect("e30." + jwe.split(".", 1)[1].replace("OKO", "!KO"))
    assert broken.exit_code == 3  # only the header is read: the rest is opaque ciphertext
    bad_head = inspect("bm90IGpzb24." + jwe.split(".", 1)[1])
    assert bad_head.exit_code == 1 and "encrypted JWE" in bad_head.stderr


def test_usage_errors_are_json_with_json(tmp_path: Path) -> None:
    token = hs256_token(STRONG)
    key = tmp_path / "k.jwk"
    key.write_text(json.dumps(SigningKey.generate("EdDSA").private_jwk()))
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"a\n" * 1_000_001)
    for args, stdin in [
        (["--key", str(key), "--secret-stdin"], STRONG),
        (["--at", "yesterday"], None),
        (["--alg", "XS999"], None),
        (["--wordlist", str(tmp_path / "missing.txt")], None),
        (["--wordlist", str(huge)], None),
        (["--bogus-option"], None),  # Click's own error
    ]:
        result = inspect(token, "--json", *args, input=stdin)
        assert result.exit_code == 2, (args, result.output)
        body = json.loads(result.stdout)
        assert set(body) == {"error"} and body["error"]["code"] == "usage_error"
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    missing = runner.invoke(app, ["inspect", "--json"])
    assert missing.exit_code == 2
    assert json.loads(missing.stdout)["error"]["code"] == "usage_error"
    # and as a process: nothing but the JSON on stdout
    shell = run_cli("--json", "--at", "never", token)
    assert shell.returncode == 2 and json.loads(shell.stdout)["error"]["code"] == "usage_error"


def test_help_documents_every_exit_status() -> None:
    shown = runner.invoke(app, ["inspect", "--help"], env={"COLUMNS": "120"})
    assert shown.exit_code == 0
    text = " ".join(shown.stdout.split())
    for status in ("0 valid", "1 invalid", "2 usage error", "3 unverified"):
        assert status in text, status


HOSTILE = {
    "sub": "admin\u202e\u2066gnp.exe",  # bidi override and isolate: reads other than it is
    "name": "\x1b[2J\x1b[31mYOU ARE PWNED\x07",  # clear screen, red, bell
    "note": "[bold red]markup[/] \u200b",  # Rich markup, zero-width space
    "zz\x1b]0;title\x07": 1,  # a control sequence in a claim name
    "exp": NOW + 300,
}


def test_control_and_bidi_characters_are_escaped_on_the_terminal() -> None:
    token = unsigned({"alg": "HS256", "kid": "k\u202e1"}, HOSTILE, b"sig")
    result = inspect(token, "--at", str(NOW))
    out = result.stdout
    assert result.exit_code == 3
    for raw in ("\x1b", "\x07", "\u202e", "\u2066", "\u200b"):
        assert raw not in result.output, repr(raw)
    assert "\\u202e" in out and "\\u001b" in out and "\\u200b" in out
    assert "[bold red]markup[/]" in out  # printed as the text it is, never interpreted
    as_json = inspect(token, "--json", "--at", str(NOW))
    assert "\u202e" not in as_json.stdout and "\x1b" not in as_json.stdout
    claims = json.loads(as_json.stdout)["claims"]
    assert claims == HOSTILE  # the escapes are JSON's own: the values survive exactly
    assert json.loads(as_json.stdout)["header"]["kid"] == "k\u202e1"


def test_a_key_with_another_kid_gets_one_coherent_verdict(tmp_path: Path) -> None:
    key = SigningKey.from_secret(STRONG, alg="HS256", kid="prod-2024")
    path = tmp_path / "k.jwk"
    path.write_text(json.dumps(key.private_jwk()))
    token = signed_with(STRONG, kid="staging")  # same secret, another kid in the header
    result = inspect(token, "--key", str(path), "--at", str(NOW))
    assert result.exit_code == 0, result.output
    assert "Signature  verified with key prod-2024 (HS256)" in result.stdout
    assert "verified with key staging" not in result.stdout
    assert result.stdout.count("differs from the token's") == 1
    report = json.loads(inspect(token, "--key", str(path), "--json", "--at", str(NOW)).stdout)
    assert report["signature"]["kid"] == "prod-2024" and report["verdict"] == "valid"
    (finding,) = [f for f in report["findings"] if f["code"] == "kid_mismatch"]
    assert finding["severity"] == "warning"
    same = inspect(signed_with(STRONG, kid="prod-2024"), "--key", str(path), "--json",
                   "--at", str(NOW))
    assert "kid_mismatch" not in {f["code"] for f in json.loads(same.stdout)["findings"]}
