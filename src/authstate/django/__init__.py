"""authstate for Django and Django REST framework (installed with ``authstate[django]``).

- ``authstate.django.middleware.AuthstateMiddleware``: ``request.user`` from authstate
  sessions or tokens, a lazy ``AuthstateUser`` (``is_authenticated``, ``identity``,
  ``scopes``); an outage answers 503 with ``Retry-After``.
- ``authstate.django.backends.AuthstateBackend``: ``django.contrib.auth.authenticate(
  request, token=...)`` through the same authenticators.
- ``authstate.django.drf``: ``AuthstateAuthentication`` and ``HasScopes`` /
  ``require_scopes(...)`` for DRF.
- ``authstate.django.sessions``: a session engine (``SESSION_ENGINE``) on authstate's
  store, sharing the middleware's ``AuthState`` (``settings.AUTHSTATE["SETTINGS"]``), and
  its ``SessionMiddleware`` (in place of Django's: a store outage answers 503).

Settings come from ``settings.AUTHSTATE`` (the keys of
``authstate.wsgi.RequestAuthenticator.from_config``). Modules are imported by their
dotted paths from the settings, so this package imports nothing of Django itself.
"""
