"""Container logs, exec and attach sessions, pod port dialling: the seam behind the kubelet's HTTPS server.

``kubelet.httpserver`` serves ``/containerLogs``, ``/exec``, ``/attach`` and ``/portForward``
from a :class:`StreamSource` (a :class:`LogSource`, an :class:`ExecSource`, an
:class:`AttachSource` and a ``kubelet.portforward.PortDialer``). This module holds the protocols,
:class:`LogOptions` and :func:`read_log`, which serves any :class:`LogLines` as ``PodLogOptions``
ask. Implementations:

* ``kubelet.docker_streams.DockerStreams`` -- the real one, over the Docker engine;
* ``kubelet.memory_streams.MemoryStreams`` -- the stand-in for tests (logs kept in memory, exec as
  a local subprocess);
* hollow nodes serve the simulated output of the fake runtime through :func:`read_log` and answer
  exec and attach with :class:`UnsupportedStreamError` (``kubelet.hollow_endpoints``).

Guarantees of every implementation: a missing pod or container raises ``ContainerNotFoundError``
(``kubelet.runtime.interface``) before any byte is streamed; output channels are :data:`STDOUT` and
:data:`STDERR` (the remote-command channel numbers); an :class:`ExecSession`'s ``output()`` ends
when the process' output ends and ``wait()`` then gives its exit code.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from kubelet.portforward import PortDialer
from kubelet.runtime.interface import RuntimeError_

__all__ = [
    "STDERR",
    "STDOUT",
    "AttachSource",
    "ExecSession",
    "ExecSource",
    "LogLines",
    "LogOptions",
    "LogSource",
    "StreamSource",
    "UnsupportedStreamError",
    "read_log",
    "timestamp",
]

STDOUT = 1
STDERR = 2



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
        """Open the log: raises ``ContainerNotFoundError`` at once if there is no such
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
        """Start ``command``; raises ``ContainerNotFoundError`` or :class:`RuntimeError_`."""
        ...


class AttachSource(Protocol):
    """Attaches to containers' main processes."""

    async def attach(self, namespace: str, pod: str, container: str, *, stdin: bool, tty: bool) -> ExecSession:
        """Join the running process' streams; ``ContainerNotFoundError`` when it does not run."""
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
        return timestamp(entry[0]) + b" " + entry[1] if options.timestamps else entry[1]

    for entry in lines:
        yield render(entry)
    while options.follow and not (log.finished and position >= len(log.lines)):
        log.changed.clear()
        if position >= len(log.lines):
            await log.changed.wait()
        for entry in log.lines[position:]:
            yield render(entry)
        position = len(log.lines)


def timestamp(at: datetime.datetime) -> bytes:
    """``at`` in RFC 3339 with nanoseconds, as Docker and the kubelet print timestamps."""
    utc = at.astimezone(datetime.UTC)
    return (utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z").encode()
