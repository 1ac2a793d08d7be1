"""WSGI entry point: `gunicorn meterproject.wsgi`."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meterproject.settings")

application = get_wsgi_application()
