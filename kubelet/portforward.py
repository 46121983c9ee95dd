"""Port-forward on the kubelet: a WebSocket with two channels per port, relayed to the pod's port.

``kubelet.httpserver`` serves ``GET /portForward/{namespace}/{pod}?ports=80,8080`` here. The
protocol is Kubernetes' WebSocket port-forward (subprotocols ``v4.channel.k8s.io``,
``portforward.k8s.io``, or none), which the Python client speaks directly and the apiserver
uses for every SPDY client (``apiserver.spdy_streams`` opens one WebSocket per forwarded
connection):

* port ``i`` (in the order of ``ports``) has data channel ``2i`` and error channel ``2i+1``;
  binary messages are ``channel byte + payload``;
* the kubelet first sends, on each channel, the port number as two little-endian bytes;
* data sent on a data channel goes to the pod's port; the pod's answer comes back on it;
* a connection failure is one text message on the error channel (Kubernetes' wording:
  ``error forwarding port 8080 to pod …: … connect: connection refused``);
* ``0xFF`` followed by a data channel number (the close message of ``v5.channel.k8s.io``)
  half-closes that port's connection: the client will send no more (kubectl's FIN on its data
  stream, relayed by the apiserver); the pod's reply still flows back;
* the WebSocket closes once every port's connection has ended.

Where the kubelet connects is the :class:`PortDialer`'s business. For Docker pods it is
``localhost`` inside the pod's network namespace, as on Kubernetes (:func:`connect_in_netns`,
entered through the pause container's ``/proc/<pid>/ns/net``: processes listening on
127.0.0.1 only are reached too); when that namespace cannot be entered (a kubelet without the
privilege), the pod's IP on the cluster's bridge, through ``machinery.netguard``. Hollow pods
refuse (they run no processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from machinery.netguard import AllowedNetworks, check_destination, open_connection

__all__ = [
    "PORTFORWARD_PROTOCOLS",
    "NetnsUnavailableError",
    "PortDialer",
    "PortForwardRefused",
    "connect_in_netns",
    "dial_sandbox",
    "parse_ports",
    "serve_port_forward",
]

log = logging.getLogger(__name__)

PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")
_CLOSE = 0xFF
_DIAL_TIMEOUT = 10.0
_CHUNK = 64 * 1024
_CLONE_NEWNET = 0x40000000


class PortForwardRefused(Exception):
    """The pod cannot be forwarded to at all (message for the client)."""


class PortDialer(Protocol):
    """Connects to a port of a pod's network."""

    async def dial(self, namespace: str, pod: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a connection; ``OSError`` (refused, unreachable) or :class:`PortForwardRefused`."""
        ...


class NetnsUnavailableError(Exception):
    """The pod's network namespace cannot be entered here (no privilege, another PID namespace)."""


def connect_in_netns(pid: int, port: int, *, timeout: float = _DIAL_TIMEOUT) -> socket.socket:
    """A TCP connection to ``127.0.0.1:port`` inside the network namespace of process ``pid``
    (blocking: call it from a worker thread).

    A dedicated thread enters the namespace (``setns`` changes only the calling thread's), makes
    the connection and ends, so no pooled thread is left in a foreign namespace; the socket
    keeps its namespace wherever it is used. Raises :class:`NetnsUnavailableError` when the
    namespace cannot be entered, ``OSError`` when the connection fails inside it."""
    outcome: dict[str, socket.socket | BaseException] = {}

    def enter_and_connect() -> None:
        try:
            try:
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            except OSError as err:
                raise NetnsUnavailableError(str(err)) from err
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise NetnsUnavailableError(f"setns: {os.strerror(code)}")
            finally:
                os.close(fd)
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.setblocking(False)
            outcome["socket"] = sock
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=enter_and_connect, name=f"netns-dial {pid}:{port}", daemon=True)
    worker.start()
    worker.join()
    result = outcome.get("socket") or outcome.get("error") or RuntimeError("the netns dial thread ended early")
    if isinstance(result, BaseException):
        raise result
    return result


async def dial_sandbox(attrs: Mapping[str, Any], port: int, allowed: AllowedNetworks, *, pod: str
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``port`` of the pod whose pause container Docker describes in ``attrs``:
    localhost in its network namespace, else its IP on the cluster network (``allowed`` only)."""
    pid = int((attrs.get("State") or {}).get("Pid") or 0)
    if pid > 0:
        check_destination("127.0.0.1", allowed)
        try:
            sock = await asyncio.to_thread(connect_in_netns, pid, port)
        except NetnsUnavailableError as err:
            log.debug("pod %s: dialling its IP (%s)", pod, err)
        else:
            return await asyncio.open_connection(sock=sock)
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    address = next((str(n.get("IPAddress")) for n in networks.values() if n.get("IPAddress")), "")
    if not address:
        raise ConnectionRefusedError(111, f"pod {pod} has no IP address yet")
    return await open_connection(address, port, allowed)


def parse_ports(values: list[str]) -> list[int]:
    """``ports`` query values (each may be a comma list) → port numbers; ValueError on a bad one."""
    ports: list[int] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not item.isdigit() or not 0 < int(item) < 65536:
                raise ValueError(f"invalid port {item!r}: must be an integer from 1 to 65535")
            ports.append(int(item))
    if not ports:
        raise ValueError("at least one port must be given (query parameter ports)")
    return ports


class _Port:
    """One forwarded port of the WebSocket: its channels and its connection to the pod."""

    def __init__(self, index: int, port: int) -> None:
        self.port = port
        self.data, self.error = 2 * index, 2 * index + 1
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.done = asyncio.Event()
        self.pending: list[bytes] = []


async def serve_port_forward(ws: web.WebSocketResponse, dialer: PortDialer, *, namespace: str, pod: str,
                             uid: str, ports: list[int]) -> None:
    """Run the protocol of the module docstring on a prepared WebSocket until it ends."""
    forwarded = [_Port(index, port) for index, port in enumerate(ports)]
    for item in forwarded:
        prefix = item.port.to_bytes(2, "little")
        await ws.send_bytes(bytes([item.data]) + prefix)
        await ws.send_bytes(bytes([item.error]) + prefix)
    tasks = [asyncio.create_task(_forward(ws, dialer, item, namespace, pod, uid),
                                 name=f"portforward {namespace}/{pod}:{item.port}") for item in forwarded]
    inbound = asyncio.create_task(_pump_client(ws, forwarded), name=f"portforward-in {namespace}/{pod}")
    all_done = asyncio.create_task(asyncio.wait([asyncio.create_task(p.done.wait()) for p in forwarded]),
                                   name="portforward-done")
    try:
        await asyncio.wait([inbound, all_done], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*tasks, inbound, all_done):
            task.cancel()
        await asyncio.gather(*tasks, inbound, all_done, return_exceptions=True)
        for item in forwarded:
            if item.writer is not None:
                item.writer.close()
        if not ws.closed:
            await ws.close()


async def _pump_client(ws: web.WebSocketResponse, forwarded: list[_Port]) -> None:
    """Client → pods: data messages to their port's connection; close messages half-close it."""
    by_channel = {item.data: item for item in forwarded}
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            payload = bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            payload = str(msg.data).encode()
        else:
            continue
        if not payload:
            continue
        if payload[0] == _CLOSE and len(payload) >= 2 and payload[1] in by_channel:
            item = by_channel[payload[1]]
            await item.connected.wait()
            if item.writer is not None and item.writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    item.writer.write_eof()
            continue
        target = by_channel.get(payload[0])
        if target is None or target.done.is_set():
            continue
        await target.connected.wait()
        if target.writer is not None:
            target.writer.write(payload[1:])
            with contextlib.suppress(ConnectionError):
                await target.writer.drain()


async def _forward(ws: web.WebSocketResponse, dialer: PortDialer, item: _Port, namespace: str, pod: str,
                   uid: str) -> None:
    """Connect to the pod's port, then relay its bytes to the data channel until it closes."""
    try:
        try:
            reader, item.writer = await asyncio.wait_for(dialer.dial(namespace, pod, item.port), _DIAL_TIMEOUT)
        except PortForwardRefused as err:
            await ws.send_bytes(bytes([item.error]) + str(err).encode())
            return
        except (OSError, TimeoutError) as err:
            if isinstance(err, TimeoutError):
                reason = "i/o timeout"
            else:
                reason = (os.strerror(err.errno) if err.errno else str(err)).lower()
            message = (f"error forwarding port {item.port} to pod {namespace}/{pod}, uid {uid}: failed to "
                       f"connect to port {item.port} in the pod's network: connect: {reason}")
            log.info("%s", message)
            await ws.send_bytes(bytes([item.error]) + message.encode())
            return
        finally:
            item.connected.set()
        while chunk := await reader.read(_CHUNK):
            await ws.send_bytes(bytes([item.data]) + chunk)
    except (ConnectionError, RuntimeError) as err:
        log.debug("port-forward %s/%s:%d ended: %s", namespace, pod, item.port, err)
    finally:
        item.done.set()
