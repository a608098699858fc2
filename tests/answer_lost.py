"""A proxy to the platform that loses the answers to the proposals it passes on: the platform
makes the proposal, the agent's connection closes before a word comes back (a load balancer
timing out, the network dropping). Other requests, and every request once ``losing`` is
cleared, pass through with their answers.

``then`` makes it a worse network still: after the first POST it loses, each later POST is
answered as ``then`` says while ``losing`` is set ("throttled": a 429 asking to come back at
once, "timeout": a 408 saying nothing was done; neither passed on to the platform). ``gets``
answers each GET with that status (a 502 of a failing load balancer) instead of passing it
on."""

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AnswerLostProxy(ThreadingHTTPServer):
    losing = True  # POSTs' answers are lost while set
    posts = 0  # the POSTs passed on to the platform
    then: str | None = None  # "throttled" or "timeout": later POSTs' answers while losing
    gets: int | None = None  # every GET's status, not passed on


@contextmanager
def answer_lost_proxy(upstream: str) -> Iterator[AnswerLostProxy]:
    """The proxy in front of ``upstream`` (``http://host:port``); its address is ``url``."""
    host, port = upstream.removeprefix("http://").split(":")

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def refuse(self, status: int, detail: str, code: str) -> None:
            content = json.dumps({"detail": detail, "code": code}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def forward(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if method == "GET" and server.gets:
                return self.refuse(server.gets, "Bad gateway.", "bad_gateway")
            if method == "POST" and server.losing and server.posts and server.then:
                if server.then == "throttled":
                    return self.refuse(429, "Request was throttled.", "throttled")
                return self.refuse(408, "Nothing was done; send it again.", "request_timeout")
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
    # Shut down without waiting out serve_forever's default half-second look.
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
