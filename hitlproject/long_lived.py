"""What a serving process loads once, before its first request or task, and keeps for life.

A full collection visits every object the collector tracks. Django, DRF, Celery and every
app's models, admin and views are about 155,000 of them, which a 1,000-item batch's request
makes Python walk through at least once (137-188 ms of a 1.2-1.4 s request on the 2-core
machine, in process). Frozen (``gc.freeze``), they are left out of every later collection, and
a forked child keeps sharing the pages they are on, which a collection would write to. What
is loaded at start lives as long as the process, so nothing the collector could free is kept.
"""

from __future__ import annotations

import gc


def load_views() -> None:
    """Import every view the URLconf names (and what they import), as a first request would."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018


def keep_for_life() -> None:
    """Leave everything the process holds now out of the collector's later rounds."""
    gc.collect()
    gc.freeze()
