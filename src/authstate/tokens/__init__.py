"""Tokens: access (claims + the verified-token cache), refresh, opaque, introspection.

Each module is imported by name; this package imports nothing, so a verify-only
process loads ``tokens.access`` without the store-backed refresh and opaque tokens.
"""
