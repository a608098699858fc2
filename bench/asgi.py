import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("HITL_DATABASE_POOL", "on")

application = get_asgi_application()
