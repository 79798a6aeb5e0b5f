"""``/admin/*``: operator actions, for callers whose account is an admin's."""

from __future__ import annotations

from fastapi import APIRouter

from authstate.web.caller import Caller, CallerDep, StateDep
from authstate.web.problems import Problem
from authstate.web.schemas import AdminRevokedOut, problems

router = APIRouter(prefix="/admin", tags=["admin"])


def require_admin(caller: Caller) -> None:
    if not caller.user.is_admin:
        raise Problem(403, "forbidden", "this needs an admin account")


@router.post(
    "/users/{user_id}/revoke", response_model=AdminRevokedOut,
    responses=problems(401, 403, 404, 503),
    summary="Revoke every session, refresh family and access token of a user",
)
async def revoke_user(user_id: str, caller: CallerDep, state: StateDep) -> AdminRevokedOut:
    require_admin(caller)
    target = await state.users.get(user_id)
    if target is None:
        raise Problem(404, "not_found", "no such user")
    revoked = await state.revoke_user(target.id, reason="admin")
    return AdminRevokedOut(revoked_sessions=revoked.sessions, revoked_families=revoked.families)
