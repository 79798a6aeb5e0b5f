"""One Django view and its DRF twin, each needing the ``orders:read`` scope."""

from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authstate.django.drf import require_scopes as drf_scopes
from authstate.django.middleware import require_scopes


def ping(request: HttpRequest) -> JsonResponse:
    """Unprotected: the benchmark's baseline."""
    return JsonResponse({"ok": True})


def hello(request: HttpRequest) -> JsonResponse:
    """Anyone; the logged-in are greeted by name (``request.user`` is read lazily)."""
    user: Any = request.user
    return JsonResponse({"hello": user.username if user.is_authenticated else "stranger"})


@require_scopes("orders:read")
def orders(request: HttpRequest) -> JsonResponse:
    user: Any = request.user
    return JsonResponse({"user": user.username, "scopes": list(user.scopes), "orders": []})


class Orders(APIView):
    permission_classes = [drf_scopes("orders:read")]

    def get(self, request: Request) -> Response:
        return Response({"user": request.user.username, "method": request.auth.method,
                         "orders": []})


class Me(APIView):
    permission_classes = [drf_scopes()]  # authenticated, any scope

    def get(self, request: Request) -> Response:
        return Response({"user": request.user.username, "method": request.auth.method,
                         "scope": list(request.user.scopes)})
