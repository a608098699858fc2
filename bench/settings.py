"""The platform's settings plus a bare baseline endpoint, for benchmarks only."""

from hitlproject.settings import *  # noqa: F403
from hitlproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.baseline"]
ROOT_URLCONF = "bench.urls"
# Warnings and errors only (a server error with its traceback), to the server's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
