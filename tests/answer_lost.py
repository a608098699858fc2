"""A proxy to the platform that loses the answers to the proposals it passes on: the platform
makes the proposal, the agent's connection closes before a word comes back (a load balancer
timing out, the network dropping). Other requests, and every request once ``losing`` is
cleared, pass through with their answers."""

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AnswerLostProxy(ThreadingHTTPServer):
    losing = True  # POSTs' answers are lost while set
    posts = 0  # the POSTs passed on to the platform


@contextmanager
def answer_lost_proxy(upstream: str) -> Iterator[AnswerLostProxy]:
    """The proxy in front of ``upstream`` (``http://host:port``); its address is ``url``."""
    host, port = upstream.removeprefix("http://").split(":")

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            forwarded = http.client.HTTPConnection(host, int(port), timeout=90)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            forwarded.request(method, self.path, body or None, headers)
            answer = forwarded.getresponse()
            content = answer.read()
            forwarded.close()
            if method == "POST":
                server.posts += 1
                if server.losing:
                    self.close_connection = True  # the platform answered; the agent hears nothing
                    return
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def do_GET(self) -> None:
            self.forward("GET")

        def do_POST(self) -> None:
            self.forward("POST")

        def log_message(self, *args) -> None:
            pass

    server = AnswerLostProxy(("127.0.0.1", 0), Forward)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
