"""Fixtures: an ApiClient against the real apiserver embedded in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from machinery.client.rest import ApiClient
from tests.apiserver.conftest import embedded_api


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path) as api, ApiClient.from_kubeconfig(api.settings.kubeconfig_path) as c:
        yield c


def pod(name: str, namespace: str = "default", **meta: Any) -> dict[str, Any]:
    """A minimal valid Pod."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
