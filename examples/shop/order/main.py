"""The shop's order service: prices an order with the product service and charges it with payment.

``GET /order?item=<name>&qty=<n>`` calls ``$PRODUCT_URL/price?item=<name>`` (default
``http://product:8080``: the product Service's name, resolved by cluster DNS), then ``POST
$PAYMENT_URL/pay`` (default ``http://payment:8080``) with the total, and answers the order as JSON:
200 when paid, 402 when payment declines, 404 for an unknown item, 502 when a backend is unreachable.
``GET /healthz`` is the readiness probe. Listens on ``$PORT`` (default 8080). Stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

TIMEOUT = 5.0
"""Seconds allowed for each backend call."""

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Calls go straight to the Service, whatever ``http_proxy`` says."""


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """GET (or POST ``body`` as JSON to) ``url``: (HTTP status, decoded JSON answer)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Handler(BaseHTTPRequestHandler):
    """Serves orders."""

    product_url = "http://product:8080"
    payment_url = "http://payment:8080"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self.reply(200, {"status": "ok"})
        elif url.path == "/order":
            query = parse_qs(url.query)
            item = (query.get("item") or [""])[0]
            try:
                qty = int((query.get("qty") or ["1"])[0])
            except ValueError:
                self.reply(400, {"error": "qty must be an integer"})
                return
            self.order(item, qty)
        else:
            self.reply(404, {"error": f"no route {url.path}"})

    def order(self, item: str, qty: int) -> None:
        try:
            code, price = call(f"{self.product_url}/price?item={quote(item)}")
            if code != 200:
                self.reply(code, {"item": item, "error": price.get("error", "product lookup failed")})
                return
            total = int(price["price"]) * qty
            code, payment = call(f"{self.payment_url}/pay", {"amount": total})
        except (OSError, ValueError, KeyError) as exc:
            self.reply(502, {"item": item, "error": f"backend unreachable: {exc}"})
            return
        self.reply(200 if code == 200 else code, {
            "item": item, "qty": qty, "total": total, "payment": payment,
            "status": "paid" if code == 200 else "payment declined", "served_by": socket.gethostname()})

    def reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"order: {self.address_string()} {format % args}", flush=True)


def make_server(host: str = "0.0.0.0", port: int = 8080, *, product_url: str = "http://product:8080",
                payment_url: str = "http://payment:8080") -> ThreadingHTTPServer:
    """The HTTP server (not yet serving), calling the given backends; port 0 picks a free port."""
    handler = type("ConfiguredHandler", (Handler,), {"product_url": product_url.rstrip("/"),
                                                      "payment_url": payment_url.rstrip("/")})
    return ThreadingHTTPServer((host, port), handler)


def serve_until_terminated(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM, then stop accepting, finish the requests in flight and return.

    As PID 1 of its container the process would otherwise ignore SIGTERM (the kernel gives PID 1 no
    default handler) and be killed only when the pod's grace period runs out.
    """
    server.daemon_threads = False  # server_close() then waits for the requests in flight
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"order: listening on :{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    print("order: stopped", flush=True)


def main() -> None:
    server = make_server(port=int(os.environ.get("PORT", "8080")),
                         product_url=os.environ.get("PRODUCT_URL", "http://product:8080"),
                         payment_url=os.environ.get("PAYMENT_URL", "http://payment:8080"))
    serve_until_terminated(server)


if __name__ == "__main__":
    main()
