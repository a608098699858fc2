import os

from hitlproject.asgi_handler import handler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault("HITL_DATABASE_POOL", "on")

application = handler()
