"""The web server's worker: uvicorn under gunicorn (the Procfile's ``web``)."""

from uvicorn_worker import UvicornWorker

from hitlproject.long_lived import keep_for_life, load_views


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
