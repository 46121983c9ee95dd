"""The SQLite writer thread is guarded: an unexpected failure fails every pending write with a
``StorageError`` (a 500), later writes fail at once instead of hanging, the store reports itself
broken (the apiserver process then exits and is restarted), and the database stays intact."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from apiserver.storage.interface import StorageError
from apiserver.storage.sqlite import BROKEN_EXIT_CODE, SqliteStorage


class Fault:
    """``before_commit`` seam: once armed, the next commit waits for ``release`` and then raises."""

    def __init__(self) -> None:
        self.armed = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch_size: int) -> None:
        if not self.armed:
            return
        self.armed = False
        self.holding.set()
        self.release.wait(30)
        raise RuntimeError("injected writer failure")


async def test_writer_failure_fails_pending_and_later_writes(tmp_path: Path) -> None:
    fault = Fault()
    broken: list[StorageError] = []
    store = SqliteStorage(tmp_path / "state.db", before_commit=fault, on_broken=broken.append)
    await store.start()
    try:
        rev = await store.create("/registry/a", b"1")
        fault.armed = True
        held = asyncio.create_task(store.create("/registry/b", b"2"))
        await asyncio.to_thread(fault.holding.wait, 30)
        # Queued behind the failing transaction: they must fail too, not wait forever.
        queued = [asyncio.create_task(store.update("/registry/a", b"x", expected_revision=rev)),
                  asyncio.create_task(store.create("/registry/c", b"3"))]
        await asyncio.sleep(0)
        fault.release.set()
        results = await asyncio.wait_for(asyncio.gather(held, *queued, return_exceptions=True), 30)
        assert all(type(r) is StorageError for r in results), results
        with pytest.raises(StorageError, match="sqlite writer failed"):
            await asyncio.wait_for(store.create("/registry/d", b"4"), 5)
        assert len(broken) == 1 and store.broken is broken[0]
        kv = await store.get("/registry/a")
        assert kv is not None and kv.value == b"1", "reads still answer"
    finally:
        await asyncio.wait_for(store.close(), 30)

    reopened = SqliteStorage(tmp_path / "state.db")
    await reopened.start()
    try:
        listed = await reopened.list("/registry/")
        assert [(kv.key, kv.value) for kv in listed.items] == [("/registry/a", b"1")], "nothing half-written"
        assert await reopened.create("/registry/b", b"2") == rev + 1
    finally:
        await reopened.close()


_BROKEN_PROCESS = """
import asyncio, sys
from pathlib import Path
from apiserver.storage.sqlite import SqliteStorage

def boom(batch_size):
    raise RuntimeError("injected writer failure")

async def main():
    store = SqliteStorage(Path(sys.argv[1]), before_commit=boom)
    await store.start()
    try:
        await store.create("/registry/a", b"1")
    except Exception as exc:
        print("write failed:", type(exc).__name__, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_broken_store_exits_the_process(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _BROKEN_PROCESS, str(tmp_path / "state.db")],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[3])
    assert result.returncode == BROKEN_EXIT_CODE, result.stderr
    assert "write failed: StorageError" in result.stdout
    assert "sqlite store is broken" in result.stderr
