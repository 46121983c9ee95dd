"""The Kubernetes Basics tutorial's bootcamp server: answers every ``GET`` on port 8080 with
``Hello Kubernetes bootcamp! | Running on: <pod name> | v=<version>`` and logs each request, as the
tutorial's ``kubernetes-bootcamp`` image does. The version comes from ``BOOTCAMP_VERSION``. SIGTERM
stops it at once, so a pod being deleted does not wait out its grace period."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("BOOTCAMP_VERSION", "1")
STARTED = time.monotonic()
requests = 0


class Bootcamp(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global requests
        requests += 1
        body = f"Hello Kubernetes bootcamp! | Running on: {socket.gethostname()} | v={VERSION}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        uptime = time.monotonic() - STARTED
        print(f"Running On: {socket.gethostname()} | Total Requests: {requests} | App Uptime: {uptime:.0f} seconds",
              flush=True)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 has no default SIGTERM action
    print(f"Kubernetes Bootcamp App Started At: {time.strftime('%Y-%m-%dT%H:%M:%S')} "
          f"| Running On: {socket.gethostname()}", flush=True)
    ThreadingHTTPServer(("", 8080), Bootcamp).serve_forever()
