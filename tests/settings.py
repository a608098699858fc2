"""The test suite's settings: the project's own, with each of the parallel test processes
(pytest-xdist's gw0, gw1, …) on a Redis database and a data folder of its own, and, on
PostgreSQL, a backend that empties the test database between transactional tests faster
(``tests.postgresql_emptied_by_delete``).

Two processes running tests at once must not meet: not in the cache (rate-limit windows and
wake-ups are keyed by ids both processes' databases use), not on the broker, not in the data
folder (the embedded default's database, broker, cache and wake-ups). pytest-django gives each
its own test database; the rest is set here, in the environment, before the project's settings
read it, so that every process a test starts (the Celery worker, gunicorn, spawned processes)
inherits it and runs the project's own settings module on it.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

_process = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", … when run in parallel
if _process:
    _index = int(_process.removeprefix("gw"))
    if _redis := os.environ.get("REDIS_URL"):
        _url = urlsplit(_redis)
        _database = (int(_url.path.strip("/") or 0) + 1 + _index) % 16
        os.environ["REDIS_URL"] = _url._replace(path=f"/{_database}").geturl()
    _data = Path(os.environ.get("HITL_DATA_DIR", Path(__file__).resolve().parent.parent / "var"))
    os.environ["HITL_DATA_DIR"] = str(_data / f"test-{_process}")
os.environ["DJANGO_SETTINGS_MODULE"] = "hitlproject.settings"

from hitlproject.settings import *  # noqa: E402,F403

# This process's only: the processes a test starts run on Django's own backend.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"]["ENGINE"] = "tests.postgresql_emptied_by_delete"  # noqa: F405
