"""JOSE: algorithms, weak-key checks, one key (JWK), the compact JWS codec, the JWKS client.

Pure computation over ``cryptography`` and PyJWT: nothing here touches a store, so a
verify-only process (``authstate.verifier``) imports this package and the claims layer
(``authstate.tokens.access``) and nothing else. The key set and its lifecycle on the
store live in ``authstate.keystore``.
"""
