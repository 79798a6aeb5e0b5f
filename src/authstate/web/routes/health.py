"""``/healthz``: whether this instance can reach its store (for load balancers and probes)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from authstate.errors import StoreError
from authstate.web.caller import StateDep
from authstate.web.problems import problem_response
from authstate.web.schemas import HealthOut, problems

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut, responses=problems(503),
            summary="200 when the store answers, 503 when it does not")
async def healthz(state: StateDep) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    try:
        scheme = await state.ping()
    except StoreError:
        return problem_response(503, "store_unavailable", "the store does not answer",
                                headers={**headers, "Retry-After": "5"})
    body = HealthOut(status="ok", store=scheme)
    return JSONResponse(body.model_dump(), headers=headers)
