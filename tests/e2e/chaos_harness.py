"""Shared pieces of the crash tests (watch continuity, outage, chaos) and of ``bench/chaos.py``.

* waits on conditions (:func:`wait_for`, :func:`wait_until`), never fixed sleeps;
* :func:`kill_hard`: SIGKILL one pid and wait until it is gone;
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

from kubelab import launcher

__all__ = ["kill_hard", "wait_for", "wait_until"]


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll ``predicate`` until it holds; return the seconds it took. AssertionError after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


async def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> float:
    """:func:`wait_for` on the event loop."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


def kill_hard(pid: int, *, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` (no shutdown code runs) and wait until it is gone (reaped if it is our child)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_for(lambda: not launcher.is_alive(pid), timeout=timeout, what=f"pid {pid} to die of SIGKILL",
             interval=0.02)
