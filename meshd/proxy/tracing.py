"""Request identity and trace context: ``x-request-id``, B3 and W3C ``traceparent``, created when missing.

Called by :mod:`meshd.proxy.httpproxy` on every request it forwards (outbound and inbound) before
routing: whatever the client sent is kept and passed on; what is missing is created. When only one
of B3 and W3C is present the other is derived from it, so both propagate the same trace id.
The proxy does not report spans; it only keeps the context flowing (the app must copy the headers
from its inbound request to its outbound ones, as with Istio).

Ids come from :func:`random.getrandbits` (the Mersenne Twister, seeded from the OS at start), as
Envoy draws its request ids from a pseudo-random generator: they must be unique, not secret, and
this costs no system call per request.
"""

from __future__ import annotations

from random import getrandbits

__all__ = ["ensure_trace_headers"]


def _hex(n: int) -> str:
    return f"{getrandbits(n * 8):0{n * 2}x}"


def _uuid4() -> str:
    h = f"{getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def ensure_trace_headers(headers: list[tuple[str, str]]) -> str:
    """Add the missing identity and trace headers in place; the request id."""
    request_id = trace_id = span_id = traceparent = sampled = ""
    for key, value in headers:
        if key == "x-request-id":
            request_id = value
        elif key == "x-b3-traceid":
            trace_id = value
        elif key == "x-b3-spanid":
            span_id = value
        elif key == "traceparent":
            traceparent = value
        elif key == "x-b3-sampled":
            sampled = value
    if not request_id:
        request_id = _uuid4()
        headers.append(("x-request-id", request_id))
    if trace_id and traceparent:
        return request_id
    if not trace_id and traceparent:
        parts = traceparent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            headers.append(("x-b3-traceid", parts[1]))
            headers.append(("x-b3-spanid", parts[2]))
            if not sampled:
                headers.append(("x-b3-sampled", "1" if parts[3] == "01" else "0"))
            return request_id
    if not trace_id:
        trace_id, span_id = _hex(16), _hex(8)
        headers.append(("x-b3-traceid", trace_id))
        headers.append(("x-b3-spanid", span_id))
        if not sampled:
            sampled = "1"
            headers.append(("x-b3-sampled", sampled))
    if not traceparent:
        w3c_trace = trace_id.rjust(32, "0") if len(trace_id) in (16, 32) else _hex(16)
        w3c_span = span_id if len(span_id) == 16 else _hex(8)
        flags = "00" if sampled == "0" else "01"
        headers.append(("traceparent", f"00-{w3c_trace}-{w3c_span}-{flags}"))
    return request_id
