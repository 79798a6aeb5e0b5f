"""The OpenID provider driven by node ``openid-client`` and ``jose`` (tests/node/rp.mjs)
against a live ``authstate serve``: discovery, code + PKCE through the login page with
plain HTTP requests, ID token validation, UserInfo, refresh, RP-initiated logout, and
back-channel logout tokens received and validated by the script's own HTTP endpoint,
after the RP-initiated logout and after an operator revokes the user (another path).

Needs Node.js and npm; the packages (pinned in tests/node/package-lock.json) are installed
into tests/node/node_modules once (``npm ci``). Skipped without Node.js, failed instead
under ``AUTHSTATE_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.web.live_service import PASSWORD, free_port, live_service

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
EMAIL = "nora@example.com"

pytestmark = pytest.mark.slow


def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "Node.js and npm are needed to run openid-client"
        if os.environ.get("AUTHSTATE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " (AUTHSTATE_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    if not (NODE_DIR / "node_modules" / "openid-client").is_dir():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return node


def test_openid_client_and_jose(tmp_path: Path) -> None:
    node = _node()
    port = free_port()
    with live_service(tmp_path) as service:
        redirect = f"{service.url}/healthz"
        after = f"{service.url}/healthz?bye"
        user = service.seed(lambda s: s.users.create(EMAIL, PASSWORD))
        client, secret = service.seed(lambda s: s.add_client(
            "node rp", redirect_uris=(redirect,), first_party=True,
            backchannel_logout_uri=f"http://127.0.0.1:{port}/backchannel",
            post_logout_redirect_uris=(after,)))
        env = {**os.environ, "ISSUER": service.url, "CLIENT_ID": client.id,
               "CLIENT_SECRET": secret, "REDIRECT_URI": redirect, "POST_LOGOUT_URI": after,
               "EMAIL": EMAIL, "PASSWORD": PASSWORD, "RECEIVER_PORT": str(port)}
        process = subprocess.Popen([node, "rp.mjs"], cwd=NODE_DIR, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        steps: list[dict[str, object]] = []
        try:
            assert process.stdout is not None
            for line in process.stdout:
                step = json.loads(line)
                steps.append(step)
                if step.get("step") == "WAITING_FOR_REVOKE":
                    # another path: an operator revokes the user (here, its own process)
                    service.seed(lambda s: s.revoke_user(user.id, reason="admin"))
            code = process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
        errors = process.stderr.read() if process.stderr else ""
        assert code == 0, f"{errors}\n{steps}\n{service.log_tail()}"
    names = [s.get("step") for s in steps]
    assert names == ["discovered", "code_flow", "userinfo", "refresh", "rp_logout_backchannel",
                     "WAITING_FOR_REVOKE", "revoke_backchannel", None]
    assert steps[-1] == {"ok": True}
    assert steps[1]["sub"] == user.id
    assert not any(s.get("step") == "bad_logout_token" for s in steps)
