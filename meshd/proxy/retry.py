"""A route's retry policy as Envoy applies it: which failures and responses are retried, and the backoff between tries.

Read by the router (:mod:`meshd.proxy.router`) for every try it makes; the policy itself
(``attempts``, ``retry_on``, ``per_try_timeout_ms``) comes compiled on the route
(:mod:`meshd.proxy.routing`). ``retry_on`` holds Envoy's retry conditions as Istio passes them through:

* ``connect-failure``, ``refused-stream``: the upstream could not be reached (Envoy's ``UF``) or
  refused the HTTP/2 stream (nothing was processed);
* ``reset``: those, or a reset or per-try timeout before the response head;
* ``5xx``: as ``reset``, or a response status of 500 and above;
* ``gateway-error``: as ``reset``, or a 502, 503 or 504;
* ``retriable-4xx``: a 409; a status code itself (``"503"``): that status;
* gRPC names (``cancelled``, ``deadline-exceeded``, ``resource-exhausted``, ``internal``,
  ``unavailable``): that ``grpc-status`` in the response head.

Backoff: fully jittered exponential, Envoy's default base of 25 ms capped at ten times that
(:func:`backoff`).
"""

from __future__ import annotations

import functools
import random

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "backoff", "retriable_failure", "retriable_response", "retry_set"]

BACKOFF_BASE = 0.025
BACKOFF_MAX = 0.25
_GRPC_CODES = {"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8", "internal": "13",
               "unavailable": "14"}


@functools.lru_cache(maxsize=256)
def retry_set(retry_on: tuple[str, ...]) -> frozenset[str]:
    """A route's ``retry_on`` as a set (computed once per distinct policy)."""
    return frozenset(v.strip() for v in retry_on)


def retriable_failure(retry_on: frozenset[str], *, connect: bool) -> bool:
    """Envoy: resets retry under ``reset``/``5xx``/``gateway-error``, connect failures also under ``connect-failure``.

    ``refused-stream`` (an HTTP/2 REFUSED_STREAM: nothing was processed) is treated like a connect failure.
    """
    if connect and ("connect-failure" in retry_on or "refused-stream" in retry_on):
        return True
    return bool(retry_on & {"reset", "5xx", "gateway-error"})


def retriable_response(retry_on: frozenset[str], status: int, grpc_status: str) -> bool:
    """Whether a response with ``status`` (and ``grpc-status`` header, possibly empty) is retried."""
    if "5xx" in retry_on and status >= 500:
        return True
    if "gateway-error" in retry_on and status in (502, 503, 504):
        return True
    if "retriable-4xx" in retry_on and status == 409:
        return True
    if str(status) in retry_on:
        return True
    return bool(grpc_status) and any(_GRPC_CODES.get(name) == grpc_status for name in retry_on)


def backoff(rng: random.Random, attempt: int) -> float:
    """The wait before try ``attempt`` (1 for the first retry): uniform in [0, min(max, base * (2**attempt - 1))]."""
    return rng.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * (2 ** attempt - 1)))
