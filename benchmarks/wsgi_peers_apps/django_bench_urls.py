"""URLs and views of ``django_bench``."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class Me(APIView):
    def get(self, request: Request) -> Response:
        user: Any = request.user
        return Response({"user": getattr(user, "username", None) or getattr(user, "id", "bench-user")})


class Token(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        from rest_framework_simplejwt.tokens import AccessToken

        token = AccessToken()
        token["user_id"] = "bench-user"
        return Response({"token": str(token)})


urlpatterns = [path("me", Me.as_view()), path("token", Token.as_view())]
