"""The web server's entry point (the Procfile's ``web``: gunicorn running uvicorn workers).

Requests are read by an event loop, so a client that sends its request slowly costs a
connection, not a worker; each view then runs in a thread, reached once through the middleware
and kept for a later request (hitlproject.asgi_handler). A request holds a database connection
only while it runs, so connections are pooled (psycopg's pool) rather than kept per thread,
and the API's requests under way are bounded before they get a thread (hitlproject.inflight).
"""

import os

from django.conf import settings

from hitlproject.asgi_handler import handler
from hitlproject.inflight import InFlightGuard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitlproject.settings")
os.environ.setdefault("HITL_DATABASE_POOL", "on")

application = InFlightGuard(
    handler(),
    limit=settings.API_MAX_IN_FLIGHT,
    per_agent=settings.API_MAX_IN_FLIGHT_PER_AGENT,
    waits=(settings.LONG_POLL_MAX_PENDING, settings.LONG_POLL_MAX_WAITS_PER_AGENT),
)
