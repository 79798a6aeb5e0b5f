"""The promised public face stays small, sorted and importable (cf. httpx's test)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

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


# The promised face, pinned: adding or dropping a name is a decision, made here.
PUBLIC = [
    "AuthMiddleware",
    "AuthState",
    "Clock",
    "Identity",
    "Session",
    "Settings",
    "Store",
    "Verifier",
    "__version__",
    "errors",
    "open_store",
]


def test_the_public_face_is_exactly_this() -> None:
    assert authstate.__all__ == PUBLIC


def test_the_test_clock_is_not_promised_but_stays_importable() -> None:
    from authstate.clock import FrozenClock, SystemClock

    assert "FrozenClock" not in authstate.__all__
    assert "SystemClock" not in authstate.__all__
    assert FrozenClock(5.0).now() == 5.0 and SystemClock().now() > 0


def test_each_name_is_the_one_its_module_defines() -> None:
    from authstate.config import Settings
    from authstate.verifier import Verifier
    from authstate.web.middleware import AuthMiddleware

    assert authstate.AuthMiddleware is AuthMiddleware
    assert authstate.Settings is Settings
    assert authstate.Verifier is Verifier
    assert authstate.errors is importlib.import_module("authstate.errors")
    assert set(PUBLIC) <= set(dir(authstate))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        authstate.FrozenClock
    with pytest.raises(ImportError):
        exec("from authstate import no_such_name", {})


def test_the_middleware_is_exported_without_importing_a_framework() -> None:
    probe = ("import sys, authstate; authstate.AuthMiddleware; "
             "print(sorted(m for m in ('fastapi', 'starlette', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_default_claims_and_data_cannot_be_shared_mutable_state() -> None:
    from authstate.identity import Identity
    from authstate.sessions import Session

    one = Identity("u", "jwt", 0.0)
    two = Identity("v", "jwt", 0.0)
    with pytest.raises(TypeError):
        one.claims["leak"] = True  # type: ignore[index]
    assert dict(two.claims) == {}
    session = Session("h", "s", "u", 0.0, 0.0, 1.0, 1.0, 0.0)
    with pytest.raises(TypeError):
        session.data["leak"] = True  # type: ignore[index]
