"""The embedded default's web server and worker, forked from one loaded Django.

On the embedded default (no ``DATABASE_URL``; SQLite and the filesystem broker) the Procfile's
``web`` runs this: one process loads Django, the URLconf, the API and the tasks, then forks
the Celery worker (its three queues on threads, the beat schedule in a thread of its own) and
serves HTTP with uvicorn itself. The two share every page the loading wrote, as gunicorn's
``--preload`` shares them among its workers, so a laptop holds one copy of Django where it
held two (about 60 MiB less, measured by ``bin/bench peer``). The worker is the same worker
``bin/worker`` runs in production, with the same options; only where it is started from
differs, so ``bin/worker`` stands in on the embedded default, as ``bin/beat`` does. Each of
the two gives back to the system what a burst of work freed (hitlproject.freed_memory).

The two stop together: when the worker ends, the web server stops (so ``bin/start`` stops the
platform, and a process manager sees the web process end); when the web server is stopped, it
stops the worker and waits for it; when the web process is killed outright, the worker notices
within a second and stops.
"""

import contextlib
import os
import signal
import sys
import threading
import time

from hitlproject.freed_memory import keep_giving_back
from hitlproject.long_lived import keep_for_life, load_views

WORKER_STOP_SECONDS = 30  # a warm shutdown finishes the tasks under way; then it is killed


def worker_argv() -> list[str]:
    """``celery worker``'s arguments, as ``bin/worker`` gives them in production, for the one
    worker that serves every queue on the embedded default."""
    queue = os.environ.get("HITL_CELERY_QUEUE", "hitl")
    return [
        "worker",
        "--loglevel", os.environ.get("CELERY_LOG_LEVEL", "info"),
        "--without-gossip", "--without-mingle",
        "--queues", f"{queue},{queue}.webhooks,{queue}.callbacks",
        "--hostname", f"{queue}@%h",
        "--pool", "threads",
        "--concurrency", os.environ.get("CELERY_CONCURRENCY", "8"),
        "--beat-thread",
    ]  # fmt: skip


def load():
    """Everything either process will import, imported once before the fork: the ASGI app
    (Django's setup with it), every view the URLconf names, every task. Returns the app."""
    from django.db import connections

    # Before anything reads the settings: the ASGI module sets the web server's environment.
    from hitlproject.asgi import application
    from hitlproject.celery import app as celery_app

    load_views()
    celery_app.loader.import_default_modules()
    connections.close_all()  # neither child may share a database connection
    return application


def serve(host: str, port: int) -> int:
    application = load()
    import uvicorn

    from hitlproject.celery import app as celery_app
    from hitlproject.webserver import Server

    keep_for_life()  # before the fork: both children share what it froze
    web_pid = os.getpid()
    worker_pid = os.fork()
    keep_giving_back()  # in each of the two
    if worker_pid == 0:  # the worker
        threading.Thread(target=_stop_when_orphaned, args=(web_pid,), daemon=True).start()
        code = 1
        try:
            celery_app.worker_main(worker_argv())
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os._exit(code)

    server = Server(  # its long polls answer at once when it is stopped
        uvicorn.Config(
            application,
            host=host,
            port=port,
            proxy_headers=False,  # X-Forwarded-For is the application's to judge
            lifespan="off",
            timeout_graceful_shutdown=20,
        )
    )
    worker_ended = threading.Event()
    worker_ended_first = threading.Event()

    def watch_worker() -> None:
        os.waitpid(worker_pid, 0)
        if not server.should_exit:
            worker_ended_first.set()
            print("The worker stopped: stopping the web server.", file=sys.stderr, flush=True)
            server.should_exit = True
        worker_ended.set()

    threading.Thread(target=watch_worker, daemon=True).start()
    # uvicorn stops on SIGTERM and SIGINT, then raises the signal again for the handler it
    # found: this one notes it, so the worker is stopped before the process ends by it.
    stopped_by = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stopped_by.append(signum))
    server.run()
    if not worker_ended.is_set():
        _signal(worker_pid, signal.SIGTERM)
        if not worker_ended.wait(WORKER_STOP_SECONDS):
            _signal(worker_pid, signal.SIGKILL)
            worker_ended.wait(5)
    if worker_ended_first.is_set():
        return 1  # the platform was not whole
    if stopped_by:  # ended by the signal, as uvicorn alone would have
        signal.signal(stopped_by[0], signal.SIG_DFL)
        signal.raise_signal(stopped_by[0])
    return 0


def _stop_when_orphaned(web_pid: int) -> None:
    """The web process was killed outright (it would have stopped the worker otherwise):
    stop as a process manager would stop a worker, finishing the tasks under way."""
    while os.getppid() == web_pid:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def main() -> None:
    """``python -m hitlproject.embedded``: the web server and the worker (bin/web);
    ``python -m hitlproject.embedded worker``: the worker alone (bin/worker, when the web
    server runs several processes of its own and so forks no worker)."""
    if sys.argv[1:] == ["worker"]:
        from hitlproject.celery import app as celery_app

        keep_giving_back()
        celery_app.worker_main(worker_argv())
        return
    host = os.environ.get("HITL_BIND", "0.0.0.0").removeprefix("[").removesuffix("]")
    sys.exit(serve(host, int(os.environ.get("PORT", "8000"))))


if __name__ == "__main__":
    main()
