"""``/admin/*``: operator actions, for callers whose account is an admin's.

Each route is one ``AuthState`` call (the CLI's ``authstate users`` makes the same ones):
an unknown user is a 404 problem, a bad scope name a 400 ``invalid_scope``, disabling,
demoting or deleting the last enabled admin a 409 ``refused``. ``CallerDep`` applies the
CSRF check to cookie-authenticated changes and names the admin in the audit trail.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from authstate.users import check_reason, check_scopes
from authstate.web.bodies import require_json
from authstate.web.caller import Caller, CallerDep, StateDep
from authstate.web.problems import Problem
from authstate.web.schemas import AdminRevokedOut, AdminUserOut, AdminUserPatch, problems

router = APIRouter(prefix="/admin", tags=["admin"])
JSON_BODY = [Depends(require_json)]


def require_admin(caller: Caller) -> None:
    if not caller.user.is_admin or caller.user.disabled:
        raise Problem(403, "forbidden", "this needs an admin account")


@router.get(
    "/users", response_model=list[AdminUserOut], responses=problems(401, 403, 422, 503),
    summary="List users, oldest first (disabled=true: only the disabled ones)",
)
async def list_users(
    caller: CallerDep, state: StateDep, disabled: bool | None = None
) -> list[AdminUserOut]:
    require_admin(caller)
    return [AdminUserOut.of(u) for u in await state.list_users(disabled=disabled)]


@router.get(
    "/users/{user_id}", response_model=AdminUserOut, responses=problems(401, 403, 404, 503),
    summary="One user",
)
async def get_user(user_id: str, caller: CallerDep, state: StateDep) -> AdminUserOut:
    require_admin(caller)
    return AdminUserOut.of(await state.get_user(user_id))


@router.patch(
    "/users/{user_id}", response_model=AdminUserOut, dependencies=JSON_BODY,
    responses=problems(400, 401, 403, 404, 409, 422, 503),
    summary="Disable or enable a user, replace their scopes, grant or take admin rights",
)
async def patch_user(
    user_id: str, body: AdminUserPatch, caller: CallerDep, state: StateDep
) -> AdminUserOut:
    require_admin(caller)
    # All or nothing: the input is checked before any change, and the changes that can
    # be refused (the last admin) go first; once one of them passed, the next cannot be.
    if body.scopes is not None:
        check_scopes(body.scopes)
    check_reason(body.reason)
    user = await state.get_user(user_id)
    if body.is_admin is not None:
        user = await state.set_admin(user_id, body.is_admin)
    if body.disabled is True:
        user = (await state.disable_user(user_id, reason=body.reason)).user
    elif body.disabled is False and user.disabled:
        user = await state.enable_user(user_id)
    if body.scopes is not None:
        user = await state.set_scopes(user_id, body.scopes)
    return AdminUserOut.of(user)


@router.delete(
    "/users/{user_id}", status_code=204, response_class=Response,
    responses=problems(401, 403, 404, 409, 503),
    summary="Delete a user and every session, token and counter kept about them",
)
async def delete_user(user_id: str, caller: CallerDep, state: StateDep) -> Response:
    require_admin(caller)
    await state.delete_user(user_id)
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/revoke", response_model=AdminRevokedOut,
    responses=problems(401, 403, 404, 503),
    summary="Revoke every session, refresh family and access token of a user",
)
async def revoke_user(user_id: str, caller: CallerDep, state: StateDep) -> AdminRevokedOut:
    require_admin(caller)
    target = await state.get_user(user_id)
    revoked = await state.revoke_user(target.id, reason="admin")
    return AdminRevokedOut(revoked_sessions=revoked.sessions, revoked_families=revoked.families)
