"""Watch clients in a child process, so the client side of the fan-out test has its own core.

``bench.apiserver`` starts one or more :func:`watcher_process` with multiprocessing ("spawn")
and talks to each over a Pipe:

    child  -> parent   ("ready", connected, failed)   every watch has its 200 response headers
    parent -> child    "stop"                          the writes are over and have had time to land
    child  -> parent   ("result", WatcherReport)

Each watch is one HTTPS connection (one ``TCPConnector`` with ``limit`` = the number of watches)
reading newline-delimited events; the delay of an event is the receive time minus the
``bench/sent`` annotation the writer put in the object (wall clock, same machine). Lines are
scanned with a regex, not decoded, to keep the client's CPU cost per event small; the report
includes the child's CPU use so a saturated client is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from machinery.kubeconfig import load_kubeconfig

SENT = re.compile(rb'"bench/sent":"([0-9.]+)"')


@dataclass
class WatcherReport:
    """What one child saw: every delay (seconds, as array('d') bytes), counts and its CPU use."""

    delays: bytes
    events: int
    connected: int
    failed: int
    ended_early: int
    cpu_seconds: float
    wall_seconds: float
    errors: dict[str, int] = field(default_factory=dict)


async def _watch(session: aiohttp.ClientSession, url: str, delays: array[float], ready: asyncio.Queue[bool],
                 errors: dict[str, int]) -> bool:
    """One watch until cancelled; returns False if the stream ended on its own."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as resp:
            ready.put_nowait(resp.status == 200)
            if resp.status != 200:
                errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
                return False
            content = resp.content
            while True:
                line = await content.readline()
                if not line:
                    return False
                found = SENT.search(line)
                if found is not None:
                    delays.append(time.time() - float(found.group(1)))
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        name = type(exc).__name__
        errors[name] = errors.get(name, 0) + 1
        ready.put_nowait(False)
        return False


async def _run(server: str, kubeconfig: Path, path: str, count: int, conn: Connection) -> None:
    ssl_context = load_kubeconfig(kubeconfig).ssl_context()
    delays: array[float] = array("d")
    errors: dict[str, int] = {}
    ready: asyncio.Queue[bool] = asyncio.Queue()
    connector = aiohttp.TCPConnector(limit=count + 4, ssl=ssl_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(_watch(session, server + path, delays, ready, errors), name=f"watch-{i}")
                 for i in range(count)]
        connected = failed = 0
        for _ in range(count):
            if await ready.get():
                connected += 1
            else:
                failed += 1
        conn.send(("ready", connected, failed))
        cpu0, wall0 = sum(os.times()[:2]), time.perf_counter()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        cpu, wall = sum(os.times()[:2]) - cpu0, time.perf_counter() - wall0
        ended_early = sum(1 for t in tasks if t.done())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    report = WatcherReport(delays=delays.tobytes(), events=len(delays), connected=connected, failed=failed,
                           ended_early=ended_early, cpu_seconds=cpu, wall_seconds=wall, errors=errors)
    conn.send(("result", report))


def watcher_process(server: str, kubeconfig: str, path: str, count: int, conn: Connection) -> None:
    """Child entry point: ``count`` watches of ``server + path``; see the module doc for the protocol."""
    try:
        asyncio.run(_run(server, Path(kubeconfig), path, count, conn))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
