"""The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636 §4.3), checked in the
order that decides where its errors go.

``trusted_redirect`` comes first: until the client is known and the redirect URI is one
it registered, nothing may be sent to that URI, so its failures (``UntrustedRequest``)
are shown to the user as a page (RFC 6749 §4.1.2.1, RFC 9700 §4.11: no open redirect).
``check`` then validates the rest; its ``OAuthRefused`` errors carry an RFC 6749 code
and are sent back to the (now trusted) redirect URI with ``state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authstate.clients import Client
from authstate.errors import (
    InvalidRequest,
    RequestNotSupported,
    RequestUriNotSupported,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from authstate.oauth import pkce, scopes

PARAM_MAX = 2048
NONCE_MAX = 255


class UntrustedRequest(Exception):
    """The client or redirect URI cannot be trusted: show ``message``, never redirect."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client: Client
    redirect_uri: str
    redirect_uri_given: bool
    scope: tuple[str, ...]
    state: str | None
    code_challenge: str
    nonce: str | None
    prompt: frozenset[str] = frozenset()  # OIDC Core §3.1.2.1: "none" or "consent"


def trusted_redirect(client: Client | None, redirect_uri: str | None) -> tuple[str, bool]:
    """The redirect URI to answer to and whether the request named it: it must be one
    the client registered, compared exactly; it may be left out only when the client
    registered exactly one (RFC 6749 §3.1.2.3)."""
    if client is None:
        raise UntrustedRequest("Unknown client: the application that sent you here is "
                               "not registered with this service.")
    if redirect_uri is None:
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0], False
        raise UntrustedRequest("The application did not say where to send you back "
                               "(redirect_uri is missing).")
    if redirect_uri not in client.redirect_uris:
        raise UntrustedRequest("The application asked to send you to an address it has "
                               "not registered (redirect_uri mismatch).")
    return redirect_uri, True


def check(
    client: Client, redirect_uri: str, given: bool, params: Mapping[str, str]
) -> AuthorizationRequest:
    """The validated request, or ``OAuthRefused`` with the RFC 6749 §4.1.2.1 code."""
    for name, value in params.items():
        if len(value) > PARAM_MAX:
            raise InvalidRequest(f"the {name} parameter is too long")
    if "request" in params:  # OIDC Core §6: request objects are not implemented
        raise RequestNotSupported("request objects are not supported")
    if "request_uri" in params:
        raise RequestUriNotSupported("request_uri is not supported")
    response_type = params.get("response_type")
    if not response_type:
        raise InvalidRequest("the response_type parameter is required")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported")
    if not client.allows("authorization_code"):
        raise UnauthorizedClient("this client may not use the authorization code grant")
    challenge = params.get("code_challenge")
    if not challenge:
        raise InvalidRequest("PKCE is required: send code_challenge (S256)")
    if params.get("code_challenge_method") != pkce.METHOD:
        raise InvalidRequest("code_challenge_method must be S256")
    if not pkce.valid_challenge(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters")
    requested = scopes.parse(params.get("scope"))
    scopes.within(requested, client.scopes, "client")
    nonce = params.get("nonce")
    if nonce is not None and not 0 < len(nonce) <= NONCE_MAX:
        raise InvalidRequest(f"nonce is 1-{NONCE_MAX} characters")
    return AuthorizationRequest(
        client=client, redirect_uri=redirect_uri, redirect_uri_given=given,
        scope=requested, state=params.get("state"), code_challenge=challenge, nonce=nonce,
        prompt=_prompt(params.get("prompt")),
    )


def _prompt(value: str | None) -> frozenset[str]:
    """OIDC Core §3.1.2.1 ``prompt``: ``none`` (alone: answer without any page) and
    ``consent`` (ask even a first-party client's user) are implemented; ``login`` and
    ``select_account`` are refused rather than silently ignored."""
    prompt = frozenset((value or "").split())
    unknown = prompt - {"none", "consent"}
    if unknown:
        raise InvalidRequest(f"prompt={sorted(unknown)[0][:32]} is not supported")
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequest("prompt=none cannot be combined with another value")
    return prompt
