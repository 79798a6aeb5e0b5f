"""The promised public face stays small, sorted and importable (cf. httpx's test)."""

from __future__ import annotations

import authstate


def test_all_is_sorted_and_complete() -> None:
    assert authstate.__all__ == sorted(authstate.__all__)
    for name in authstate.__all__:
        assert hasattr(authstate, name), name


def test_exported_members_belong_to_authstate() -> None:
    for name in authstate.__all__:
        member = getattr(authstate, name)
        module = getattr(member, "__module__", None) or getattr(member, "__name__", "")
        if name != "__version__":
            assert module.startswith("authstate"), (name, module)


def test_the_front_door_is_reachable() -> None:
    assert authstate.AuthState.__module__ == "authstate.state"
    assert issubclass(authstate.errors.TokenExpired, authstate.errors.AuthstateError)
