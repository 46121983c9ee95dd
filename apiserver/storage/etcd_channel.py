"""The gRPC channel to every member of an etcd cluster, and when a unary call is tried again.

Used by :class:`~apiserver.storage.etcd.EtcdStorage` only. One channel names all members
(``ipv4:127.0.0.1:2379,127.0.0.1:22379,…``) with gRPC's ``round_robin`` policy: each call goes
to a member whose connection is up, a member that dies leaves the rotation as soon as its
connection breaks, and gRPC reconnects to it in the background (backoff capped at
:data:`MAX_RECONNECT_BACKOFF_MS`) so a restarted member is used again. Calls wait for a ready
member (``wait_for_ready``) instead of failing while the channel reconnects.

:meth:`EtcdChannel.unary` runs one call under an overall deadline (the store's ``timeout``)
and tries again, on whichever member is up, after a failure that says the cluster is
momentarily unable to answer:

- ``UNAVAILABLE``: the member died or was unreachable, or etcd refused for a passing reason
  ("etcdserver: no leader", "leader changed", "request timed out", "too many requests");
- ``DEADLINE_EXCEEDED`` of one attempt: a member that lost its leader holds a request until
  etcd's own request timeout (7 s by default), so each attempt gets at most
  ``attempt_timeout`` and the next attempt may reach a member of the new majority.

A read is simply repeated. A write may have been applied by an attempt that failed after
it was sent (a connection cut mid-call, a timeout while raft was committing it). etcd's own
client therefore never repeats a write once sent, and Kubernetes reports such an error as
a 500. Here every write is a transaction guarded by ``create_revision == 0`` or
``mod_revision == expected``, so repeating it can never apply it twice: a repeat that
succeeds proves the earlier attempt did not (and, its guard now false, never will), and a
repeat whose guard fails may be the trace of our own earlier attempt. :class:`Reply` says
so (``ambiguous``), and the store settles that case from etcd's history (see ``etcd.py``).

A gRPC error that is not retried, or the last one when the deadline passes, is raised as
is; the store maps it to a :class:`~apiserver.storage.interface.StorageError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aetcd import rpc

from apiserver.storage.interface import StorageError

log = logging.getLogger(__name__)

MAX_RECONNECT_BACKOFF_MS = 2000
"""A dead member is redialled at least this often, so it rejoins the rotation soon after it restarts."""

REQUIRE_LEADER = (("hasleader", "true"),)
"""etcd metadata (clientv3's ``WithRequireLeader``): a member cut off from the leader ends the
stream with "no leader" instead of keeping a watch that silently stops; Kubernetes watches so."""

_RETRY_CODES = frozenset({rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED})

BALANCING = ("round_robin", "pick_first")
"""gRPC policies: spread calls over all members, or stay on the first that answers (in list
order) until it fails, as etcd's clients did before 3.4; tests use it to know the member in use."""

_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Large lists (5,000 pods is ~11 MB) exceed gRPC's default 4 MiB receive limit.
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    # A member that stops answering (host frozen, network cut) is noticed by keepalive pings;
    # etcd accepts one every 5 s at most (--grpc-keepalive-min-time).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


def parse_endpoint(url: str) -> tuple[str, int]:
    """``http://host:port`` (or ``host:port``) as (host, port); etcd's client port by default."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", ""):
        raise StorageError(f"etcd endpoint {url!r}: only plain http is supported")
    return parts.hostname or "127.0.0.1", parts.port or 2379


def channel_target(urls: list[str]) -> str:
    """One gRPC target naming every member: ``ipv4:a:p1,b:p2`` (or ``ipv6:[a]:p1,…``).

    Host names are resolved once, here; all members must share one address family.
    """
    v4: list[str] = []
    v6: list[str] = []
    for url in urls:
        host, port = parse_endpoint(url)
        for address in _addresses(host):
            if address.version == 4:
                v4.append(f"{address}:{port}")
            else:
                v6.append(f"[{address}]:{port}")
    if v4 and v6:
        raise StorageError(f"etcd endpoints {urls}: mixing IPv4 and IPv6 members is not supported")
    return f"ipv4:{','.join(v4)}" if v4 else f"ipv6:{','.join(v6)}"


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise StorageError(f"etcd endpoint host {host!r} does not resolve: {exc}") from exc
    found = sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=lambda a: (a.version, str(a)))
    v4 = [a for a in found if a.version == 4]
    return [v4[0]] if v4 else found[:1]


@dataclass(frozen=True, slots=True)
class Reply:
    """A unary call's response; ``ambiguous``: an earlier attempt of this write may have been applied."""

    response: Any
    ambiguous: bool = False


def retryable(exc: BaseException) -> bool:
    """Whether a failed call may succeed on another attempt (on another member)."""
    return isinstance(exc, rpc.AioRpcError) and exc.code() in _RETRY_CODES


class EtcdChannel:
    """One gRPC channel over every etcd member, with the KV, Watch and Maintenance stubs."""

    def __init__(self, urls: list[str], *, timeout: float, attempt_timeout: float | None = None,
                 balancing: str = "round_robin", clock: Callable[[], float] = time.monotonic) -> None:
        if balancing not in BALANCING:
            raise ValueError(f"etcd balancing {balancing!r}: expected one of {', '.join(BALANCING)}")
        self.target = channel_target(urls)
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout if attempt_timeout is not None else max(timeout / 4, 1.0)
        self._clock = clock
        self._channel: Any = rpc.insecure_channel(
            self.target, options=(("grpc.lb_policy_name", balancing), *_CHANNEL_OPTIONS))
        self.kv: Any = rpc.KVStub(self._channel)
        self.watch: Any = rpc.WatchStub(self._channel)
        self.maintenance: Any = rpc.MaintenanceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def unary(self, method: Any, request: Any, *, write: bool = False, bulk: bool = False,
                    budget: float | None = None) -> Reply:
        """Call ``method(request)`` until it answers or ``budget`` (the store's timeout) is spent.

        ``write``: the request changes etcd, so a failed attempt makes the reply ``ambiguous``.
        ``bulk``: a large read, whose one attempt may use the whole budget.
        """
        deadline = self._clock() + (budget if budget is not None else self.timeout)
        ambiguous = False
        pause = 0.05
        while True:
            remaining = deadline - self._clock()
            attempt = remaining if bulk else min(remaining, self.attempt_timeout)
            try:
                response = await method(request, timeout=max(attempt, 0.01), wait_for_ready=True)
                return Reply(response, ambiguous)
            except rpc.AioRpcError as exc:
                if not retryable(exc) or deadline - self._clock() <= pause:
                    raise
                ambiguous = ambiguous or write
                log.info("etcd call failed (%s: %s); trying again", exc.code().name, exc.details())
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
