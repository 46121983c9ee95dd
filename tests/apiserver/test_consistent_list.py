"""Consistent lists come from the watch cache once it has caught up with the store, on etcd too.

Against a real etcd: lists without a resourceVersion are answered from the cache (no storage
``list`` operation) and see every write acknowledged before them; a write outside kubelab's
prefix moves etcd's revision where the cache never follows, and the list is then read from etcd.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from apiserver.storage import open_storage
from tests.apiserver.conftest import Api, embedded_api
from tests.etcd_server import EtcdServer

pytestmark = pytest.mark.etcd

CM = "/api/v1/namespaces/default/configmaps"


async def storage_lists(api: Api) -> float:
    """How many storage ``list`` operations the apiserver has made (from /metrics)."""
    status, text = await api.request("GET", "/metrics")
    assert status == 200
    found = re.search(r'apiserver_storage_operation_duration_seconds_count\{operation="list"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def names(api: Api) -> list[str]:
    status, body = await api.request("GET", CM)
    assert status == 200
    return [item["metadata"]["name"] for item in body["items"]]


async def test_consistent_lists_on_etcd_come_from_the_cache_unless_etcd_moved_elsewhere(
        tmp_path: Path, etcd_server: EtcdServer) -> None:
    prefix = f"/kubelab-test-{uuid.uuid4().hex[:8]}"
    # A generous wait, so that a slow machine cannot turn a cache hit into a read from etcd.
    async with embedded_api(tmp_path, "etcd", etcd_servers=[etcd_server.client_url], etcd_prefix=prefix,
                            etcd_cache_list_wait=2.0) as api:
        before = await storage_lists(api)
        for i in range(5):
            status, _ = await api.request("POST", CM, {"metadata": {"name": f"c{i}"}})
            assert status == 201
            assert f"c{i}" in await names(api), "a list sees every write acknowledged before it"
        assert await storage_lists(api) == before, "all five lists were answered from the cache"

        foreign = open_storage("etcd", etcd_servers=[etcd_server.client_url], etcd_prefix=f"{prefix}-other")
        await foreign.start()
        try:
            await foreign.create("/unrelated/key", b"{}")
        finally:
            await foreign.close()
        assert sorted(await names(api)) == [f"c{i}" for i in range(5)]
        assert await storage_lists(api) == before + 1, "etcd's revision moved where the cache cannot follow"

        status, _ = await api.request("POST", CM, {"metadata": {"name": "c5"}})
        assert status == 201
        assert "c5" in await names(api)
        assert await storage_lists(api) == before + 1, "the cache caught up with the next write of its own"
