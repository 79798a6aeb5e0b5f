"""gunicorn's entry point for ``django_bench``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_bench")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
