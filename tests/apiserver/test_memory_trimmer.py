"""The apiserver gives freed heap pages back to the kernel periodically (glibc malloc_trim)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from apiserver import server


class FakeLibc:
    def __init__(self) -> None:
        self.trims: list[int] = []

    def malloc_trim(self, pad: int) -> int:
        self.trims.append(pad)
        return 1


async def test_trims_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = FakeLibc()
    monkeypatch.setattr(server, "_libc", lambda: libc)
    task = asyncio.create_task(server.run_memory_trimmer(interval=0.01))
    async with asyncio.timeout(10):
        while len(libc.trims) < 3:
            await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(libc.trims) >= 3 and set(libc.trims) == {0}


async def test_without_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_libc", lambda: None)
    await asyncio.wait_for(server.run_memory_trimmer(interval=0.01), timeout=1)


def test_this_machine_has_glibc_malloc_trim() -> None:
    libc = server._libc()
    assert libc is not None and libc.malloc_trim(0) in (0, 1)
