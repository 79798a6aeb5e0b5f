"""The Django REST framework site of ``benchmarks/wsgi_peers.py``: settings, URLs and
views in one module (``DJANGO_SETTINGS_MODULE=django_bench``), the stack chosen by
``BENCH_STACK``: ``plain`` (no authentication), ``authstate``
(``AuthstateAuthentication``, the service's store from ``AUTHSTATE_*``) or ``simplejwt``
(``JWTStatelessUserAuthentication``: HS256, no database read, like authstate's).
Every stack serves ``GET /me`` with ``IsAuthenticated`` (``AllowAny`` for ``plain``)."""

from __future__ import annotations

import os

STACK = os.environ.get("BENCH_STACK", "plain")
SECRET_KEY = "wsgi-peers-benchmark-secret-0123456789abcdef0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_bench_urls"
USE_TZ = True
MIDDLEWARE: list[str] = []
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"] if STACK == "simplejwt" else []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

AUTHENTICATION = {
    "plain": [],
    "authstate": ["authstate.django.drf.AuthstateAuthentication"],
    "simplejwt": ["rest_framework_simplejwt.authentication.JWTStatelessUserAuthentication"],
}[STACK]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": AUTHENTICATION,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny" if STACK == "plain"
                                   else "rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SIMPLE_JWT = {"ALGORITHM": "HS256", "SIGNING_KEY": SECRET_KEY}
if STACK == "authstate":
    from authstate.config import Settings

    AUTHSTATE = {"SETTINGS": Settings().model_dump()}
