"""OAuth 2.1 pieces under the front door: scopes, PKCE, authorization codes and the
authorization request. ``AuthState`` composes them into the grants; clients live in
``authstate.clients``. Nothing here knows HTTP."""
