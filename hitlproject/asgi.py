"""The web server's entry point (the Procfile's ``web``: gunicorn running uvicorn workers).

Requests are read by an event loop, so a client that sends its request slowly costs a
connection, not a worker; each view then runs in a thread of its own. Threads come and go
with requests, so database connections are pooled (psycopg's pool) rather than kept per
thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitlproject.settings")
os.environ.setdefault("HITL_DATABASE_POOL", "on")

application = get_asgi_application()
