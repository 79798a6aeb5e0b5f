"""``authstate inspect``: decode, verify and lint a JWT locally, instead of pasting it
into a website.

Exit status (so that ``authstate inspect "$T" && trust`` cannot accept a forgery):
0 valid (signature verified with a key, claims good), 1 invalid or malformed, 2 usage
error, 3 unverified (nothing wrong found, but the signature was not checked). A secret
is only ever read from stdin, never from the command line (shell history, ``ps``).
Everything printed goes through ``escape_text``: a token's author chooses its claims,
and must not get to move the cursor or reverse text on the reader's terminal.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from typer.core import TyperCommand

from authstate.errors import AuthstateError, UnusableKey
from authstate.inspection import (
    GUESS_MAX_WORDS,
    Malformed,
    decode,
    escape_text,
    jwe_header,
    pasted_token,
    report,
)
from authstate.jose.algorithms import ALGORITHMS
from authstate.jose.jwk import SigningKey
from authstate.keystore import KeySet

try:  # Typer 0.24+ carries its own copy of Click, whose errors are not click's
    from typer._click.core import Context
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover -- older Typer on the real Click
    from click import Context, UsageError  # type: ignore[assignment]

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNVERIFIED = 3
EXIT_CODES = {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "unverified": EXIT_UNVERIFIED}
WORDLIST_MAX_BYTES = 64 * 1024 * 1024  # with GUESS_MAX_WORDS, bounds a guess to seconds


class Usage(Exception):
    """The command line or a key file is wrong; exit 2."""


def parse_instant(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Usage(f"--at takes epoch seconds or an ISO 8601 time, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _alg_within_family(header_alg: object, family: str, default: str) -> str:
    """For keys that do not name their algorithm (an RSA PEM, a bare secret): the
    header's algorithm if it is one of the key type's, else the family default."""
    if isinstance(header_alg, str) and ALGORITHMS.get(header_alg) is not None and (
        ALGORITHMS[header_alg].kty == family
    ):
        return header_alg
    return default


def load_key_file(path: Path, alg: str | None, header_alg: object) -> KeySet:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise Usage(f"cannot read {path}: {error.strerror}") from None
    text = data.strip()
    try:
        if text.startswith(b"{"):
            document = json.loads(text)
            if isinstance(document, dict) and "keys" in document:
                return KeySet.from_jwks(document, skip_unusable=True, allow_weak=True)
            if isinstance(document, dict) and document.get("alg") is None and alg is None:
                kty = document.get("kty")
                if kty in ("RSA", "oct"):
                    alg = _alg_within_family(header_alg, str(kty),
                                             "RS256" if kty == "RSA" else "HS256")
            return KeySet([SigningKey.from_jwk(document, alg=alg, allow_weak=True)])
        try:
            return KeySet([SigningKey.from_pem(text, alg=alg)])
        except UnusableKey as error:
            if alg is not None or "RS256 or PS256" not in error.message:
                raise
            # an RSA key does not say RS or PS: take the header's, if it is an RSA one
            rsa_alg = _alg_within_family(header_alg, "RSA", "RS256")
            return KeySet([SigningKey.from_pem(text, alg=rsa_alg)])
    except ValueError:
        raise Usage(f"{path} is neither a JWK, a JWK Set nor a PEM key") from None
    except AuthstateError as error:
        raise Usage(f"{path}: {error.message}") from None


def load_jwks(source: str) -> KeySet:
    try:
        if source.startswith(("https://", "http://")):
            response = httpx.get(source, timeout=5.0, follow_redirects=False)
            if response.status_code != 200:
                raise Usage(f"fetching {source} gave HTTP {response.status_code}")
            document = response.json()
        else:
            document = json.loads(Path(source).read_bytes())
        return KeySet.from_jwks(document, skip_unusable=True, allow_weak=True)
    except httpx.HTTPError as error:
        raise Usage(f"cannot fetch {source}: {error}") from None
    except OSError as error:
        raise Usage(f"cannot read {source}: {error.strerror}") from None
    except ValueError:
        raise Usage(f"{source} is not a JWK Set (JSON)") from None
    except AuthstateError as error:
        raise Usage(f"{source}: {error.message}") from None


def _echo(text: str, *, err: bool = False) -> None:
    typer.echo(escape_text(text), err=err)


def render(result: dict[str, Any]) -> None:
    echo = _echo
    echo("Header")
    echo(json.dumps(result["header"], indent=2, ensure_ascii=False))
    if result["kind"] == "jwe":
        echo(f"Result     unverified: {result['signature']['message']}")
        return
    echo("Claims")
    echo(json.dumps(result["claims"], indent=2, ensure_ascii=False))
    if result["times"]:
        echo(f"Times (evaluated at {result['evaluated_at']})")
        for name, info in result["times"].items():
            echo(f"  {name:<9} {info['utc']}  ({info['relative']})")
    sig = result["signature"]
    if sig["status"] == "verified":
        by = "the secret from stdin" if sig["kid"] == "stdin" else f"key {sig['kid']}"
        echo(f"Signature  verified with {by} ({sig['alg']})")
    elif sig["status"] == "cracked":
        echo(f"Signature  FORGEABLE: made with the guessable secret {sig['secret']!r} "
             f"({sig['alg']})")
    elif sig["status"] == "invalid":
        echo(f"Signature  INVALID: {sig['message']}")
    else:
        echo("Signature  NOT CHECKED (give --key FILE, --secret-stdin or --jwks URL|FILE)")
    if result["findings"]:
        echo("Findings")
        for finding in result["findings"]:
            echo(f"  {finding['severity']:<8} {finding['code']:<17} {finding['message']}")
    if result["verdict"] == "valid":
        echo("Result     valid")
    elif result["verdict"] == "unverified":
        echo("Result     unverified: the signature was not checked, so the claims are only "
             "what anyone could have written")
    else:
        echo(f"Result     invalid: {result['problems'][0]}")


def usage_error(message: str) -> dict[str, Any]:
    """The ``--json`` shape of a usage error (exit 2), stable for scripts."""
    return {"error": {"code": "usage_error", "message": message}}


class InspectCommand(TyperCommand):
    """Click's own usage errors (a missing token, an unknown option) answer in JSON too
    when ``--json`` is on the command line, so a script parsing stdout never gets text."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        wants_json = "--json" in args  # before parsing, which consumes ``args``
        try:
            return super().parse_args(ctx, args)
        except UsageError as error:
            if not wants_json:
                raise
            _echo(json.dumps(usage_error(error.format_message()), ensure_ascii=False))
            ctx.exit(EXIT_USAGE)


KeyFileOption = typer.Option(
    None, "--key", help="Verify with this key file: PEM, OpenSSH, JWK or JWK Set."
)
WordlistOption = typer.Option(
    None, "--wordlist",
    help="More secrets to try, one per line: an HS* token given without a key is guessed "
    "against the shipped list of common secrets, then these; with --secret-stdin they feed "
    f"the weak-secret lint. At most {GUESS_MAX_WORDS} words, "
    f"{WORDLIST_MAX_BYTES // (1024 * 1024)} MiB.",
)


def inspect_command(
    token: str = typer.Argument(..., help="The token, or - to read it from stdin."),
    key: Path | None = KeyFileOption,
    secret_stdin: bool = typer.Option(
        False, "--secret-stdin", help="Verify with an HMAC secret read from stdin."
    ),
    jwks: str | None = typer.Option(None, "--jwks", help="Verify with a JWK Set: URL or file."),
    alg: str | None = typer.Option(
        None, "--alg", help="The key's algorithm, for keys that do not say (RSA PEM, secret)."
    ),
    issuer: str | None = typer.Option(
        None, "--issuer", help="Expect this iss; another one makes the token invalid."
    ),
    audience: str | None = typer.Option(
        None, "--audience", help="Expect this aud (or a list holding it); else invalid."
    ),
    at: str | None = typer.Option(
        None, "--at", help="Judge the times at this instant (epoch seconds or ISO 8601)."
    ),
    wordlist: Path | None = WordlistOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Decode a JWT, show its claims and times, verify it with a key, and lint it.

    Only a token whose signature was verified with a key you give is valid.
    An HS* token without a key is tried against a list of guessable secrets.
    An encrypted JWE shows its protected header only.

    \b
    Exit status:
      0  valid: signature verified with the key given, claims good
      1  invalid: malformed, bad signature, expired or not yet valid,
         wrong issuer or audience, or an error finding (alg none,
         a guessable secret, ...)
      2  usage error (with --json: {"error": {"code", "message"}})
      3  unverified: nothing wrong found, but the signature was not
         checked (no key given, or an encrypted JWE)
    """
    try:
        code = _inspect(token, key, secret_stdin, jwks, alg, issuer, audience, at, wordlist,
                        as_json)
    except Usage as error:
        if as_json:
            _echo(json.dumps(usage_error(str(error)), ensure_ascii=False))
        else:
            _echo(f"error: {error}", err=True)
        code = EXIT_USAGE
    raise typer.Exit(code)


def _read_wordlist(path: Path) -> list[bytes]:
    """One secret per line (CR LF or LF; blank lines skipped), bounded in size."""
    try:
        if path.stat().st_size > WORDLIST_MAX_BYTES:
            raise Usage(f"{path} is larger than {WORDLIST_MAX_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except OSError as error:
        raise Usage(f"cannot read {path}: {error.strerror}") from None
    words = [line.removesuffix(b"\r") for line in data.split(b"\n")]
    words = [word for word in words if word]
    if len(words) > GUESS_MAX_WORDS:
        raise Usage(f"{path} holds {len(words)} words; at most {GUESS_MAX_WORDS} are tried")
    return words


def _inspect(
    token: str,
    key: Path | None,
    secret_stdin: bool,
    jwks: str | None,
    alg: str | None,
    issuer: str | None,
    audience: str | None,
    at: str | None,
    wordlist_path: Path | None,
    as_json: bool,
) -> int:
    sources = [s for s in (key is not None, secret_stdin, jwks is not None) if s]
    if len(sources) > 1:
        raise Usage("give at most one of --key, --secret-stdin and --jwks")
    stdin_token = token == "-"  # noqa: S105 -- "-" means stdin, not a password
    if stdin_token and secret_stdin:
        raise Usage("the token and the secret cannot both come from stdin")
    if alg is not None and alg not in ALGORITHMS:
        raise Usage(f"unknown --alg {alg!r}; one of {', '.join(ALGORITHMS)}")
    if key is not None and not key.is_file():
        raise Usage(f"no key file at {key}")
    now = parse_instant(at) if at is not None else datetime.now(UTC).timestamp()
    text = pasted_token(sys.stdin.read() if stdin_token else token)
    guesses = _read_wordlist(wordlist_path) if wordlist_path is not None else []
    words = [word.decode("utf-8", "replace") for word in guesses]
    try:
        jwe = jwe_header(text)
        header = jwe if jwe is not None else decode(text)[0]
    except Malformed as error:
        return _malformed(str(error), as_json)
    secret: bytes | None = None
    keys: KeySet | None = None
    if jwe is not None:
        pass  # nothing to verify: the key, if any, could not decrypt it here
    elif key is not None:
        keys = load_key_file(key, alg, header.get("alg"))
    elif jwks is not None:
        keys = load_jwks(jwks)
    elif secret_stdin:
        secret = sys.stdin.buffer.read()
        secret = secret[:-2] if secret.endswith(b"\r\n") else secret.rstrip(b"\n")
        if not secret:
            raise Usage("--secret-stdin read an empty secret")
        name = alg or _alg_within_family(header.get("alg"), "oct", "HS256")
        try:
            keys = KeySet([SigningKey.from_secret(secret, alg=name, kid="stdin",
                                                  allow_weak=True)])
        except AuthstateError as error:
            raise Usage(error.message) from None
    try:
        result = report(text, keys=keys, secret=secret, now=now, wordlist=words,
                        guesses=guesses, issuer=issuer, audience=audience,
                        explicit_key=key is not None or secret_stdin)
    except Malformed as error:
        return _malformed(str(error), as_json)
    if as_json:
        _echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    else:
        render(result)
    return EXIT_CODES[result["verdict"]]


def _malformed(message: str, as_json: bool) -> int:
    if as_json:
        _echo(json.dumps({"verdict": "invalid", "valid": False, "signature_checked": False,
                          "problems": [message],
                          "error": {"code": "malformed_token", "message": message}},
                         ensure_ascii=False))
    else:
        _echo(f"malformed token: {message}", err=True)
    return EXIT_INVALID
