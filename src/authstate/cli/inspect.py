"""``authstate inspect``: decode, verify and lint a JWT locally, instead of pasting it
into a website.

Exit status: 0 the token is valid (well formed, within its times, no error finding,
and its signature verified when a key was given), 1 it is not, 2 usage error. A secret
is only ever read from stdin, never from the command line (shell history, ``ps``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer

from authstate.errors import AuthstateError, UnusableKey
from authstate.inspection import (
    Malformed,
    decode,
    report,
)
from authstate.keys import ALGORITHMS, KeySet, SigningKey

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


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


def render(result: dict[str, Any]) -> None:
    echo = typer.echo
    echo("Header")
    echo(json.dumps(result["header"], indent=2, ensure_ascii=False))
    echo("Claims")
    echo(json.dumps(result["claims"], indent=2, ensure_ascii=False))
    if result["times"]:
        echo(f"Times (evaluated at {result['evaluated_at']})")
        for name, info in result["times"].items():
            echo(f"  {name:<9} {info['utc']}  ({info['relative']})")
    sig = result["signature"]
    if sig["status"] == "verified":
        echo(f"Signature  verified with key {sig['kid']} ({sig['alg']})")
    elif sig["status"] == "invalid":
        echo(f"Signature  INVALID: {sig['message']}")
    else:
        echo("Signature  not checked (give --key FILE, --secret-stdin or --jwks URL|FILE)")
    if sig.get("note"):
        echo(f"           note: {sig['note']}")
    if result["findings"]:
        echo("Findings")
        for finding in result["findings"]:
            echo(f"  {finding['severity']:<8} {finding['code']:<17} {finding['message']}")
    if result["valid"]:
        echo("Result     valid")
    else:
        echo(f"Result     invalid: {result['problems'][0]}")


KeyFileOption = typer.Option(
    None, "--key", help="Verify with this key file: PEM, OpenSSH, JWK or JWK Set."
)
WordlistOption = typer.Option(
    None, "--wordlist", help="More known secrets, one per line, for the weak-secret lint."
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
    at: str | None = typer.Option(
        None, "--at", help="Judge the times at this instant (epoch seconds or ISO 8601)."
    ),
    wordlist: Path | None = WordlistOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """Decode a JWT, show its claims and times, verify it with a key, and lint it.

    Exit status: 0 valid, 1 invalid (malformed, bad signature, expired, not yet valid,
    or an error finding such as alg none or a guessable secret), 2 usage error.
    """
    try:
        code = _inspect(token, key, secret_stdin, jwks, alg, at, wordlist, as_json)
    except Usage as error:
        typer.echo(f"error: {error}", err=True)
        code = EXIT_USAGE
    raise typer.Exit(code)


def _inspect(
    token: str,
    key: Path | None,
    secret_stdin: bool,
    jwks: str | None,
    alg: str | None,
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
    text = (sys.stdin.read() if stdin_token else token).strip()
    if text.lower().startswith("bearer "):
        text = text[7:].strip()
    words: list[str] = []
    if wordlist_path is not None:
        try:
            words = wordlist_path.read_text("utf-8", "replace").splitlines()
        except OSError as error:
            raise Usage(f"cannot read {wordlist_path}: {error.strerror}") from None
    try:
        header, _, _ = decode(text)
    except Malformed as error:
        return _malformed(str(error), as_json)
    secret: bytes | None = None
    keys: KeySet | None = None
    if key is not None:
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
    note = None
    if key is not None or secret_stdin:
        keys, note = _bind_single(keys, header.get("kid"))
    try:
        result = report(text, keys=keys, secret=secret, now=now, wordlist=words)
        if note:
            result["signature"]["note"] = note
    except Malformed as error:
        return _malformed(str(error), as_json)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    else:
        render(result)
    return EXIT_VALID if result["valid"] else EXIT_INVALID


def _bind_single(keys: KeySet | None, kid: object) -> tuple[KeySet | None, str | None]:
    """A key given explicitly is the key to check with, whatever kid it carries."""
    if keys is None or len(keys) != 1 or not isinstance(kid, str):
        return keys, None
    only = next(iter(keys))
    if only.kid == kid:
        return keys, None
    note = None if only.kid == "stdin" else (
        f"the key's kid {only.kid!r} differs from the token's; checked with it anyway")
    return KeySet([dataclasses.replace(only, kid=kid)]), note


def _malformed(message: str, as_json: bool) -> int:
    if as_json:
        typer.echo(json.dumps({"valid": False, "problems": [message],
                               "error": {"code": "malformed_token", "message": message}}))
    else:
        typer.echo(f"malformed token: {message}", err=True)
    return EXIT_INVALID

