"""A minimal Django project protected by authstate: no database, no Django users.

``AUTHSTATE`` trusts a running ``authstate serve`` (its JWTs through its JWKS, other
tokens through its introspection endpoint), from the environment::

    export AUTHSTATE_URL=http://127.0.0.1:8000 AUTHSTATE_CLIENT_ID=... AUTHSTATE_CLIENT_SECRET=...
    cd examples/django_project && gunicorn -w 2 -b 127.0.0.1:8001 orders_site.wsgi

Set ``AUTHSTATE_STORE`` instead (and the other ``AUTHSTATE_*`` of the service) to be on the
service's own store: its session cookies, and revocation pushed over its bus.
"""

import os
import secrets

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(32)
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "orders_site.urls"
WSGI_APPLICATION = "orders_site.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = ["authstate.django.middleware.AuthstateMiddleware"]
AUTHENTICATION_BACKENDS = ["authstate.django.backends.AuthstateBackend"]

if os.environ.get("AUTHSTATE_STORE"):
    from authstate.config import Settings

    AUTHSTATE = {"SETTINGS": Settings().model_dump()}  # the AUTHSTATE_* environment
else:
    AUTHSTATE = {
        "AUTH_URL": os.environ.get("AUTHSTATE_URL", "http://127.0.0.1:8000"),
        "CLIENT_ID": os.environ.get("AUTHSTATE_CLIENT_ID"),
        "CLIENT_SECRET": os.environ.get("AUTHSTATE_CLIENT_SECRET"),
        "ISSUER": os.environ.get("AUTHSTATE_ISSUER"),
    }
    if os.environ.get("AUTHSTATE_JWKS_MIN_REFRESH_INTERVAL"):
        AUTHSTATE["JWKS_MIN_REFRESH_INTERVAL"] = os.environ["AUTHSTATE_JWKS_MIN_REFRESH_INTERVAL"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["authstate.django.drf.AuthstateAuthentication"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,  # no django.contrib.auth: the anonymous caller is None
}
