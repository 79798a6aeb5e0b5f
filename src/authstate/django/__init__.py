"""authstate for Django: the session engine (``authstate.django.sessions``)."""
