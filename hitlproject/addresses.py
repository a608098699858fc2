"""Where this machine's web process answers, as a browser on it opens it: the address
``seed_demo`` prints the console at, and the one messages link to unless
``HITL_CONSOLE_URL`` says how the console's users reach it."""

from django.conf import settings


def served_at() -> str:
    """Where the Procfile's web process answers on this machine (HITL_BIND, PORT)."""
    host = settings.WEB_BIND
    if host in {"", "0.0.0.0"}:  # every IPv4 interface: this machine's own among them
        host = "127.0.0.1"
    elif host in {"::", "[::]"}:
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.WEB_PORT}"
