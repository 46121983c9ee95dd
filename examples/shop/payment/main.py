"""The shop's payment service: approves or declines charges over HTTP (stdlib only).

``POST /pay`` with ``{"amount": <cents>}`` answers ``{"status": "approved", "id": ...}``, or 402
``{"status": "declined"}`` above ``$PAYMENT_LIMIT`` cents (default 10000); ``GET /healthz`` is the
readiness probe. The order service calls it as ``http://payment:8080``. Listens on ``$PORT``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Handler(BaseHTTPRequestHandler):
    """Serves charges."""

    limit = 10000
    """Largest amount (cents) approved."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/pay":
            self.reply(404, {"error": f"no route {self.path}"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            amount = int(body["amount"])
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": 'want a JSON body {"amount": <cents>}'})
            return
        if amount > self.limit:
            self.reply(402, {"status": "declined", "amount": amount, "limit": self.limit})
        else:
            self.reply(200, {"status": "approved", "amount": amount, "id": uuid.uuid4().hex[:12],
                             "served_by": socket.gethostname()})

    def reply(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"payment: {self.address_string()} {format % args}", flush=True)


def make_server(host: str = "0.0.0.0", port: int = 8080, *, limit: int = 10000) -> ThreadingHTTPServer:
    """The HTTP server (not yet serving); port 0 picks a free port."""
    handler = type("LimitedHandler", (Handler,), {"limit": limit})
    return ThreadingHTTPServer((host, port), handler)


def serve_until_terminated(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM, then stop accepting, finish the requests in flight and return.

    As PID 1 of its container the process would otherwise ignore SIGTERM (the kernel gives PID 1 no
    default handler) and be killed only when the pod's grace period runs out.
    """
    server.daemon_threads = False  # server_close() then waits for the requests in flight
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"payment: listening on :{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    print("payment: stopped", flush=True)


def main() -> None:
    server = make_server(port=int(os.environ.get("PORT", "8080")), limit=int(os.environ.get("PAYMENT_LIMIT", "10000")))
    serve_until_terminated(server)


if __name__ == "__main__":
    main()
