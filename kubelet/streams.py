"""Container logs, exec and attach sessions, pod port dialling: the seam behind the kubelet's HTTPS server.

``kubelet.httpserver`` serves ``/containerLogs``, ``/exec``, ``/attach`` and ``/portForward``
from a :class:`StreamSource` (a :class:`LogSource`, an :class:`ExecSource`, an
:class:`AttachSource` and a ``kubelet.portforward.PortDialer``). Two implementations live here:

* :class:`DockerStreams` -- the real one. It finds a pod's container by the labels the Docker
  runtime puts on every container (``io.kubernetes.pod.namespace``, ``io.kubernetes.pod.name``,
  ``io.kubernetes.container.name``, ``io.kubernetes.container.restartCount``), reads logs with
  ``container.logs(stream=True, ...)`` and runs commands with ``exec_create``/``exec_start``
  (socket mode; with ``tty=False`` Docker multiplexes stdout/stderr in 8-byte-header frames,
  undone by :class:`DockerFrameDecoder`), attaches through ``kubelet.attach`` and dials a pod's
  port at its pause container's IP (through ``machinery.netguard``, the pod network only). The
  SDK is blocking: every call runs in a thread.
* :class:`MemoryStreams` -- the stand-in for tests: logs appended in memory, exec run as a local
  subprocess (the command runs on the host; tests only), ports dialled on the host's loopback,
  no attach.

Hollow nodes serve the simulated output of the fake runtime through :func:`read_log` and answer
exec and attach with :class:`UnsupportedStreamError` (``kubelet.hollow_endpoints``).

Guarantees: a missing pod or container raises :class:`ContainerNotFoundError` before any byte is
streamed; output channels are :data:`STDOUT` and :data:`STDERR` (the remote-command channel
numbers); an :class:`ExecSession`'s ``output()`` ends when the process' output ends and
``wait()`` then gives its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelet.portforward import PortDialer, dial_sandbox
from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_
from machinery.netguard import AllowedNetworks

__all__ = [
    "STDERR",
    "STDOUT",
    "AttachSource",
    "DockerFrameDecoder",
    "DockerSocketSession",
    "DockerStreams",
    "ExecSession",
    "ExecSource",
    "LogLines",
    "LogOptions",
    "LogSource",
    "MemoryStreams",
    "StreamSource",
    "UnsupportedStreamError",
    "read_log",
]

STDOUT = 1
STDERR = 2

_LABEL_NS = "io.kubernetes.pod.namespace"
_LABEL_POD = "io.kubernetes.pod.name"
_LABEL_CONTAINER = "io.kubernetes.container.name"
_LABEL_RESTARTS = "io.kubernetes.container.restartCount"
_SANDBOX = "POD"
"""The container name label of a pod's pause container (its network)."""


@dataclass(frozen=True)
class LogOptions:
    """The ``PodLogOptions`` a log request carries (``limitBytes`` is applied by the server)."""

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    previous: bool = False
    since_seconds: int | None = None


class LogSource(Protocol):
    """Where container logs come from."""

    async def logs(self, namespace: str, pod: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        """Open the log: raises :class:`ContainerNotFoundError` at once if there is no such
        container, else returns the bytes; with ``follow`` they end when the container's output ends."""
        ...


class ExecSession(Protocol):
    """One running command inside a container."""

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """``(STDOUT | STDERR, data)`` chunks until the process' output ends."""
        ...

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None:
        """Signal end of input (the process reads EOF)."""
        ...

    async def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int:
        """The exit code, once the process has exited."""
        ...

    async def close(self) -> None:
        """Release the session (the client went away); idempotent."""
        ...


class ExecSource(Protocol):
    """Runs commands inside containers."""

    async def exec(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                   stdin: bool, tty: bool) -> ExecSession:
        """Start ``command``; raises :class:`ContainerNotFoundError` or :class:`RuntimeError_`."""
        ...


class AttachSource(Protocol):
    """Attaches to containers' main processes."""

    async def attach(self, namespace: str, pod: str, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        """Join the running process' streams; :class:`ContainerNotFoundError` when it does not run."""
        ...


class StreamSource(LogSource, ExecSource, AttachSource, PortDialer, Protocol):
    """Every stream: what ``kubelet.httpserver.start_kubelet_server`` serves from."""


class UnsupportedStreamError(RuntimeError_):
    """The container cannot do this at all (a hollow pod runs no process to exec into): a 400."""


class LogLines(Protocol):
    """A container's output as :func:`read_log` reads it: timestamped lines, appended as they come."""

    @property
    def lines(self) -> list[tuple[datetime.datetime, bytes]]: ...

    @property
    def finished(self) -> bool:
        """The container exited: no more lines will come."""
        ...

    @property
    def changed(self) -> asyncio.Event:
        """Set whenever a line is appended or the output finishes."""
        ...


async def read_log(log: LogLines, options: LogOptions) -> AsyncIterator[bytes]:
    """The bytes of ``log`` as ``options`` ask (sinceSeconds, tailLines, timestamps); with
    ``follow`` the stream ends only when the output finishes."""
    lines = list(log.lines)
    if options.since_seconds is not None:
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=options.since_seconds)
        lines = [entry for entry in lines if entry[0] >= cutoff]
    if options.tail_lines is not None:
        lines = lines[len(lines) - options.tail_lines:] if options.tail_lines > 0 else []
    position = len(log.lines)

    def render(entry: tuple[datetime.datetime, bytes]) -> bytes:
        return _timestamp(entry[0]) + b" " + entry[1] if options.timestamps else entry[1]

    for entry in lines:
        yield render(entry)
    while options.follow and not (log.finished and position >= len(log.lines)):
        log.changed.clear()
        if position >= len(log.lines):
            await log.changed.wait()
        for entry in log.lines[position:]:
            yield render(entry)
        position = len(log.lines)


# ---------------------------------------------------------------------------------------------
# In-memory stand-in


@dataclass
class _MemoryLog:
    lines: list[tuple[datetime.datetime, bytes]] = field(default_factory=list)
    finished: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def _timestamp(at: datetime.datetime) -> bytes:
    """RFC 3339 with nanoseconds, as Docker and the kubelet print timestamps."""
    utc = at.astimezone(datetime.UTC)
    return (utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z").encode()


class MemoryStreams:
    """A :class:`StreamSource` kept in memory: tests append log lines, exec runs host processes."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str, str, int], _MemoryLog] = {}
        self.exec_calls: list[dict[str, Any]] = []
        """Every exec request seen (namespace, pod, container, command, stdin, tty), for assertions."""

    def _log(self, namespace: str, pod: str, container: str, attempt: int) -> _MemoryLog:
        return self._logs.setdefault((namespace, pod, container, attempt), _MemoryLog())

    def append(self, namespace: str, pod: str, container: str, *lines: str, attempt: int = 0,
               at: datetime.datetime | None = None) -> None:
        """Add output lines (a newline is added to each) to attempt ``attempt`` of the container."""
        log = self._log(namespace, pod, container, attempt)
        when = at or datetime.datetime.now(datetime.UTC)
        log.lines.extend((when, line.encode() + b"\n") for line in lines)
        log.changed.set()

    def finish(self, namespace: str, pod: str, container: str, *, attempt: int = 0) -> None:
        """The container attempt exited: following readers reach the end of the stream."""
        log = self._log(namespace, pod, container, attempt)
        log.finished = True
        log.changed.set()

    async def logs(self, namespace: str, pod: str, container: str, options: LogOptions) -> AsyncIterator[bytes]:
        attempts = sorted(a for (ns, p, c, a) in self._logs if (ns, p, c) == (namespace, pod, container))
        if options.previous:
            attempts = attempts[:-1]
        if not attempts:
            what = "previous terminated container" if options.previous else "container"
            raise ContainerNotFoundError(f'{what} "{container}" in pod "{pod}" not found')
        return read_log(self._logs[(namespace, pod, container, attempts[-1])], options)

    async def exec(self, namespace: str, pod: str, container: str, command: Sequence[str], *,
                   stdin: bool, tty: bool) -> ExecSession:
        if not any((ns, p, c) == (namespace, pod, container) for (ns, p, c, _) in self._logs):
            raise ContainerNotFoundError(f'container "{container}" in pod "{pod}" not found')
        self.exec_calls.append({"namespace": namespace, "pod": pod, "container": container,
                                "command": list(command), "stdin": stdin, "tty": tty})
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if tty else asyncio.subprocess.PIPE)
        except OSError as err:
            raise RuntimeError_(f"failed to exec in container: {err}") from err
        return _ProcessSession(process)

    async def attach(self, namespace: str, pod: str, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        raise UnsupportedStreamError(f"cannot attach to {namespace}/{pod}/{container}: the in-memory stand-in "
                                     "runs no main process")

    async def dial(self, namespace: str, pod: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The stand-in's pods share the host's loopback (tests only)."""
        return await asyncio.open_connection("127.0.0.1", port)


class _ProcessSession:
    """An :class:`ExecSession` over a local subprocess (the stand-in's exec)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.resizes: list[tuple[int, int]] = []

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

        async def pump(channel: int, reader: asyncio.StreamReader | None) -> None:
            while reader is not None and (chunk := await reader.read(65536)):
                await queue.put((channel, chunk))
            await queue.put(None)

        tasks = [asyncio.create_task(pump(STDOUT, self._process.stdout), name="exec-stdout"),
                 asyncio.create_task(pump(STDERR, self._process.stderr), name="exec-stderr")]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def write_stdin(self, data: bytes) -> None:
        if self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self._process.stdin.drain()

    async def close_stdin(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.close()

    async def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    async def wait(self) -> int:
        return await self._process.wait()

    async def close(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


# ---------------------------------------------------------------------------------------------
# Docker


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
    """A :class:`StreamSource` over a ``docker.DockerClient`` (containers found by pod labels)."""

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
