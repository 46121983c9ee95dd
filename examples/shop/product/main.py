"""The shop's product service: a price list over HTTP (stdlib only).

``GET /price?item=<name>`` answers ``{"item": ..., "price": <cents>}`` (404 for an unknown item);
``GET /items`` lists the catalogue; ``GET /healthz`` is the readiness probe. The order service
calls it as ``http://product:8080``. Listens on ``$PORT`` (default 8080).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PRICES = {"apple": 50, "banana": 25, "coffee": 450, "tea": 300}
"""Item -> price in cents."""


class Handler(BaseHTTPRequestHandler):
    """Serves the price list."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self.reply(200, {"status": "ok"})
        elif url.path == "/items":
            self.reply(200, {"items": sorted(PRICES)})
        elif url.path == "/price":
            item = (parse_qs(url.query).get("item") or [""])[0]
            if item in PRICES:
                self.reply(200, {"item": item, "price": PRICES[item], "served_by": socket.gethostname()})
            else:
                self.reply(404, {"error": f"unknown item {item!r}"})
        else:
            self.reply(404, {"error": f"no route {url.path}"})

    def reply(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"product: {self.address_string()} {format % args}", flush=True)


def make_server(host: str = "0.0.0.0", port: int = 8080) -> ThreadingHTTPServer:
    """The HTTP server (not yet serving); port 0 picks a free port."""
    return ThreadingHTTPServer((host, port), Handler)


def serve_until_terminated(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM, then stop accepting, finish the requests in flight and return.

    As PID 1 of its container the process would otherwise ignore SIGTERM (the kernel gives PID 1 no
    default handler) and be killed only when the pod's grace period runs out.
    """
    server.daemon_threads = False  # server_close() then waits for the requests in flight
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"product: listening on :{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    print("product: stopped", flush=True)


def main() -> None:
    server = make_server(port=int(os.environ.get("PORT", "8080")))
    serve_until_terminated(server)


if __name__ == "__main__":
    main()
