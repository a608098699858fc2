"""The web server's worker: uvicorn under gunicorn (the Procfile's ``web``)."""

import socket
import sys

import uvicorn
from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from hitlproject import wakeups
from hitlproject.long_lived import keep_for_life, load_views


class Server(uvicorn.Server):
    """uvicorn's server, whose long polls (``?wait=``) answer as soon as it is stopped, with
    what they wait on as it is then: uvicorn waits for every request under way, up to its
    graceful timeout (20-30 s), and then cuts off those still waiting with a 500, so a stop
    sent while an agent long-polled took that long and the agent got an error for a
    question the server could answer."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        wakeups.stop_waiting()
        await super().shutdown(sockets)


class WebWorker(UvicornWorker):
    """uvicorn's worker, leaving ``X-Forwarded-For`` to the application: uvicorn would take a
    client's address from it whenever the connection comes from 127.0.0.1, so anyone on the
    machine, or a proxy on it that passes the header through, could pick the address a login
    lockout counts against. ``HITL_TRUSTED_PROXY_COUNT`` says which proxies to believe."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "proxy_headers": False}

    def load_wsgi(self) -> None:
        """The application, with every view loaded and kept out of the collector's rounds
        (hitlproject.long_lived) before the first request."""
        super().load_wsgi()
        load_views()
        keep_for_life()

    async def _serve(self) -> None:
        """``UvicornWorker._serve``, with the server above."""
        self.config.app = self.wsgi
        server = Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
