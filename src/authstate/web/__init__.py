"""The web layer: the ASGI middleware for other apps, and the service (``create_app``)."""
