"""The web server's worker: uvicorn under gunicorn (the Procfile's ``web``)."""

from uvicorn_worker import UvicornWorker


class WebWorker(UvicornWorker):
    """uvicorn's worker, leaving ``X-Forwarded-For`` to the application: uvicorn would take a
    client's address from it whenever the connection comes from 127.0.0.1, so anyone on the
    machine, or a proxy on it that passes the header through, could pick the address a login
    lockout counts against. ``HITL_TRUSTED_PROXY_COUNT`` says which proxies to believe."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "proxy_headers": False}
