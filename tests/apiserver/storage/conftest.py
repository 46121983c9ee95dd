"""Fixtures for the storage conformance suite: ``storage`` is each backend in turn.

``memory`` and ``sqlite`` (a file in tmp_path) are built per test; ``etcd`` shares one real
etcd process per session (``tests/etcd_server.py``) and gives each test its own key prefix.
A missing etcd binary fails the etcd tests loudly: CI installs it, so a skip would hide a gap.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apiserver.storage.etcd import EtcdStorage
from apiserver.storage.interface import Storage
from apiserver.storage.memory import MemoryStorage
from apiserver.storage.sqlite import SqliteStorage
from tests.etcd_server import EtcdServer


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("etcd", id="etcd", marks=pytest.mark.etcd),
    ]
)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage
    if request.param == "memory":
        store = MemoryStorage()
    elif request.param == "sqlite":
        store = SqliteStorage(tmp_path / "state.db")
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        store = EtcdStorage([server.client_url], prefix=f"/test-{uuid.uuid4().hex[:12]}")
    await store.start()
    try:
        yield store
    finally:
        await store.close()
