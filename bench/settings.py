"""The platform's settings plus a bare baseline endpoint, for benchmarks only."""

from hitlproject.settings import *  # noqa: F403
from hitlproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.baseline"]
ROOT_URLCONF = "bench.urls"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
