"""The in-memory :class:`~kubelet.streams.StreamSource` for tests: :class:`MemoryStreams`.

Tests append log lines per container attempt (and mark an attempt finished, which ends a
following reader); exec runs the command as a local subprocess on the host (tests only); ports
are dialled on the host's loopback; attach is unsupported (no main process runs). Used by the
kubelet HTTPS server's tests and the apiserver's proxy tests in place of
``kubelet.docker_streams.DockerStreams``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_
from kubelet.streams import STDERR, STDOUT, ExecSession, LogOptions, UnsupportedStreamError, read_log

__all__ = ["MemoryStreams"]


@dataclass
class _MemoryLog:
    lines: list[tuple[datetime.datetime, bytes]] = field(default_factory=list)
    finished: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryStreams:
    """A :class:`~kubelet.streams.StreamSource` kept in memory: tests append log lines, exec runs host processes."""

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


