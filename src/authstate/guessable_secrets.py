"""HMAC secrets an attacker tries first, for ``authstate inspect``'s guess of an HS* token
signed without a key given.

Provenance: compiled by hand for authstate (no list was copied) from secrets that are
published as defaults or examples and so end up in production: jwt.io's debugger
samples (``your-256-bit-secret`` …), the README examples of express-jwt (``shhhhh``),
express-session (``keyboard cat``) and node-jsonwebtoken (``shhhhh``, ``secret``),
Google's ``notasecret`` for P12 keys, "change me" placeholders from framework templates,
and the head of every list of most common passwords. ``keys.COMMON_SECRETS`` (what
loading a key refuses) is included. A bigger cracking list is for ``--wordlist FILE``;
this one stays short so that every inspection can afford it.
"""

from __future__ import annotations

from authstate.jose.weakkeys import COMMON_SECRETS

_DEFAULTS = (
    # jwt.io debugger and tutorials
    "your-256-bit-secret", "your-384-bit-secret", "your-512-bit-secret", "secret",
    "secretkey", "secret-key", "secret_key", "SECRET_KEY", "SecretKey", "Secret",
    "SECRET", "jwt", "JWT", "jwtsecret", "jwt-secret", "jwt_secret", "JWT_SECRET",
    "jwtkey", "jwt-key", "jwt_key", "jwt_secret_key", "jwt-secret-key", "your_jwt_secret",
    "your-jwt-secret", "your_secret_key", "your-secret-key", "mysecret", "my-secret",
    "my_secret", "mysecretkey", "my-secret-key", "my_secret_key", "supersecret",
    "super-secret", "super_secret", "supersecretkey", "topsecret", "secret123", "s3cret",
    "s3cr3t", "secretpassword", "thisismysecret", "tokensecret", "token_secret",
    "token-secret", "appsecret", "app_secret", "app-secret", "apisecret", "api_secret",
    "api-secret", "authsecret", "auth_secret", "auth-secret", "signingkey", "signing_key",
    # library README examples and vendor defaults
    "shhhhh", "shhhhhhared-secret", "keyboard cat", "notasecret", "nosecret",
    "not-a-secret", "insecure", "development", "dev", "devsecret", "dev-secret",
    "test", "testing", "testsecret", "test-secret", "example", "sample", "demo",
    "default", "changeme", "change-me", "change_me", "changeit", "change-this",
    "replace-me", "replaceme", "todo", "TODO", "xxx", "xxxxxx", "xxxxxxxx",
    # the head of every common-password list
    "password", "Password", "password1", "Password1", "P@ssw0rd", "passw0rd",
    "password123", "123456", "1234567", "12345678", "123456789", "1234567890",
    "12345", "1234", "111111", "000000", "qwerty", "qwerty123", "abc123", "letmein",
    "welcome", "admin", "admin123", "root", "toor", "pass", "hello", "iloveyou",
    "monkey", "dragon", "master", "login", "guest", "hunter2", "foobar", "foo", "bar",
    "key", "private", "token", "hmac", "access",
)

GUESSABLE_SECRETS: tuple[str, ...] = tuple(dict.fromkeys((*_DEFAULTS, *sorted(COMMON_SECRETS))))
