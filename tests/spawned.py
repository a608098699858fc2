"""What a test runs in processes of its own: started afresh (spawned), never forked.

A fork copies the test process as it stands, with every lock its other threads hold at that
moment (the fake servers', the worker's watchers', an earlier test's): a child that then needs
one waits forever, and so does its test. CI hung so, for its whole 90 minutes, on a test that
forked eight processes late in a full run. A spawned process starts with no thread but its own,
and sets Django up from the environment it inherits (the same database, Redis and data folder).

This module imports nothing of the platform, so a spawned process can load it before Django is
set up.
"""

import os
from threading import Barrier

import django


def django_ready(together: Barrier | None = None) -> None:
    """A process pool's initializer: set Django up, then, with ``together`` (a barrier of the
    pool's size, from the same context), wait until every process of the pool is ready, so
    that their work starts at once, not as each finishes starting."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hitlproject.settings")
    django.setup()
    if together is not None:
        together.wait()
