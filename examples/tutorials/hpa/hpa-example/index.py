"""The HPA walkthrough's php-apache server: ``GET /`` (or ``/index.php``) sums square roots over a
million iterations, as the tutorial's ``index.php`` does, then answers ``OK!``; anything else is a
404. It listens on port 80 and serves each request in its own thread, so the CPU a pod burns follows
the load it is given (and its CPU limit caps it). SIGTERM stops it at once."""

from __future__ import annotations

import math
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = ("/", "/index.php")
ITERATIONS = 1_000_000


def burn() -> float:
    """The page's work: x += sqrt(x), a million times."""
    x = 0.0001
    for _ in range(ITERATIONS + 1):
        x += math.sqrt(x)
    return x


class PhpApache(BaseHTTPRequestHandler):
    server_version = "Apache"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in PAGES:
            self.send_error(404)
            return
        burn()
        body = b"OK!"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 has no default SIGTERM action
    server = ThreadingHTTPServer(("", 80), PhpApache)
    server.daemon_threads = True
    server.serve_forever()
