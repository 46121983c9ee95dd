"""The Docker :class:`~kubelet.streams.StreamSource`: :class:`DockerStreams`.

Built by ``kubelet.server`` for a Docker node. It finds a pod's container by the labels the Docker
runtime puts on every container (``io.kubernetes.pod.namespace``, ``io.kubernetes.pod.name``,
``io.kubernetes.container.name``, ``io.kubernetes.container.restartCount``), so the exited
containers of a finished pod are found as long as they exist (until the pod is deleted). It reads
logs with ``container.logs(stream=True, ...)`` and runs commands with ``exec_create``/``exec_start``
(socket mode; with ``tty=False`` Docker multiplexes stdout/stderr in 8-byte-header frames, undone
by :class:`DockerFrameDecoder`), attaches through ``kubelet.attach`` (which reuses
:class:`DockerSocketSession`) and dials a pod's port at its pause container's IP (through
``machinery.netguard``, the pod network only). The SDK is blocking: every call runs in a thread,
its items handed to the event loop with back-pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from kubelet.portforward import dial_sandbox
from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_
from kubelet.streams import STDERR, STDOUT, ExecSession, LogOptions
from machinery.netguard import AllowedNetworks

__all__ = ["DockerFrameDecoder", "DockerSocketSession", "DockerStreams"]

_LABEL_NS = "io.kubernetes.pod.namespace"
_LABEL_POD = "io.kubernetes.pod.name"
_LABEL_CONTAINER = "io.kubernetes.container.name"
_LABEL_RESTARTS = "io.kubernetes.container.restartCount"
_SANDBOX = "POD"
"""The container name label of a pod's pause container (its network)."""


class DockerFrameDecoder:
    """Splits Docker's multiplexed attach stream (``tty=False``) into ``(stream, payload)`` frames.

    Each frame is an 8-byte header -- stream (1 stdout, 2 stderr), three zero bytes, a
    big-endian uint32 length -- then the payload. Data may arrive split anywhere.
    """

    _HEADER = struct.Struct(">BxxxI")

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add bytes; return every frame now complete (empty payloads dropped)."""
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= self._HEADER.size:
            stream, length = self._HEADER.unpack_from(self._buffer)
            end = self._HEADER.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[self._HEADER.size:end])
            del self._buffer[:end]
            if payload:
                frames.append((STDERR if stream == 2 else STDOUT, payload))
        return frames


async def _iterate_in_thread(iterator: Iterator[bytes], on_close: Any = None) -> AsyncIterator[bytes]:
    """Drain a blocking iterator in a worker thread, yielding its items on the event loop.

    At most 64 items wait in the queue (back-pressure on the thread); leaving the loop early calls
    ``on_close`` (which must unblock the iterator, e.g. by closing its socket) and stops the thread.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    slots = threading.Semaphore(64)
    stop = threading.Event()

    def hand_over(item: bytes | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def worker() -> None:
        try:
            for item in iterator:
                while not slots.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                hand_over(item)
            hand_over(None)
        except BaseException as err:  # handed to the consumer, which re-raises it
            hand_over(err)

    thread = threading.Thread(target=worker, name="docker-stream", daemon=True)
    thread.start()
    try:
        while (item := await queue.get()) is not None:
            slots.release()
            if isinstance(item, BaseException):
                if stop.is_set():
                    break
                raise RuntimeError_(f"reading from the container failed: {item}") from item
            yield item
    finally:
        stop.set()
        if on_close is not None:
            with contextlib.suppress(Exception):
                on_close()


class DockerStreams:
    """A :class:`~kubelet.streams.StreamSource` over a ``docker.DockerClient`` (containers found by pod labels)."""

    def __init__(self, client: Any, *, allowed: AllowedNetworks | None = None) -> None:
        self._client = client
        self.allowed = allowed or AllowedNetworks()
        """Where port-forward may connect: the pod network (loopback only by default)."""

    def _find(self, namespace: str, pod: str, container: str, *, previous: bool) -> Any:
        found = self._client.containers.list(all=True, filters={"label": [
            f"{_LABEL_NS}={namespace}", f"{_LABEL_POD}={pod}", f"{_LABEL_CONTAINER}={container}"]}, ignore_removed=True)
        attempts = sorted(found, key=lambda c: int(c.labels.get(_LABEL_RESTARTS, "0") or 0))
        if previous:
            attempts = [c for c in attempts[:-1] if c.status != "running"]
        if not attempts:
            what = "previous terminated container" if previous else "container"
            raise ContainerNotFoundError(f'{what} "{container}" in pod "{pod}" not found')
        return attempts[-1]

    async def logs(self, namespace: str, pod: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        target = await asyncio.to_thread(self._find, namespace, pod, container, previous=options.previous)
        kwargs: dict[str, Any] = {"stream": True, "follow": options.follow, "timestamps": options.timestamps,
                                  "stdout": True, "stderr": True}
        if options.tail_lines is not None:
            kwargs["tail"] = options.tail_lines
        if options.since_seconds is not None:
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=options.since_seconds)
            kwargs["since"] = since
        try:
            stream = await asyncio.to_thread(target.logs, **kwargs)
        except Exception as err:  # docker.errors.APIError stays behind this seam
            raise RuntimeError_(f"failed to read the logs of {container}: {err}") from err
        return _iterate_in_thread(stream, getattr(stream, "close", None))

    async def exec(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                   stdin: bool, tty: bool) -> ExecSession:
        target = await asyncio.to_thread(self._find, namespace, pod, container, previous=False)
        api = self._client.api

        def start() -> tuple[str, socket.socket]:
            created = api.exec_create(target.id, list(command), stdin=stdin, stdout=True, stderr=True, tty=tty)
            raw = api.exec_start(created["Id"], socket=True, tty=tty)
            # The client's request timeout must not end a session that is merely quiet (kubectl exec
            # of a silent loop): the session lasts as long as the command does.
            raw._sock.settimeout(None)
            return created["Id"], raw._sock

        try:
            exec_id, sock = await asyncio.to_thread(start)
        except Exception as err:  # docker.errors.APIError and transport errors stay behind this seam
            raise RuntimeError_(f"failed to exec in container: {err}") from err
        return DockerSocketSession(api, exec_id, sock, tty=tty)

    async def attach(self, namespace: str, pod: str, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        from kubelet.attach import attach_container  # it builds on this module

        target = await asyncio.to_thread(self._find, namespace, pod, container, previous=False)
        return await attach_container(self._client.api, target, stdin=stdin, tty=tty)

    async def dial(self, namespace: str, pod: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``localhost:port`` in the pod's network namespace, else the pod's IP (``kubelet.portforward``)."""
        sandbox = await asyncio.to_thread(self._find, namespace, pod, _SANDBOX, previous=False)
        return await dial_sandbox(sandbox.attrs, port, self.allowed, pod=f"{namespace}/{pod}")


class DockerSocketSession:
    """An :class:`ExecSession` over a hijacked Docker exec socket (``kubelet.attach`` reuses it
    for attach sockets)."""

    def __init__(self, api: Any, exec_id: str, sock: socket.socket, *, tty: bool) -> None:
        self._api = api
        self._id = exec_id
        self._sock = sock
        self._tty = tty
        self._closed = False

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        decoder = DockerFrameDecoder()

        def chunks() -> Iterator[bytes]:
            while data := self._sock.recv(65536):
                yield data

        async for data in _iterate_in_thread(chunks()):
            if self._tty:
                yield STDOUT, data
            else:
                for frame in decoder.feed(data):
                    yield frame

    async def write_stdin(self, data: bytes) -> None:
        await asyncio.to_thread(self._sock.sendall, data)

    async def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._sock.shutdown, socket.SHUT_WR)

    async def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._api.exec_resize, self._id, height=height, width=width)

    async def wait(self) -> int:
        while True:
            info = await asyncio.to_thread(self._api.exec_inspect, self._id)
            if not info.get("Running"):
                return int(info.get("ExitCode") or 0)
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # unblocks the reader thread's recv()
            with contextlib.suppress(OSError):
                self._sock.close()
