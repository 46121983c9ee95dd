"""ServiceAccount controller against the embedded apiserver: every namespace gets ``default``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from controllers.serviceaccount import ServiceAccountController, namespace_active
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import NAMESPACES, SERVICEACCOUNTS
from tests.controllers.helpers import eventually, running_controller


def running(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        return ServiceAccountController(client, factory, ControllerManagerSettings())

    return running_controller(tmp_path, make, workers=1, name="serviceaccount")



@pytest.mark.parametrize("ns, active", [
    pytest.param({"metadata": {"name": "a"}, "status": {"phase": "Active"}}, True, id="active"),
    pytest.param({"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z"}}, False, id="deleting"),
    pytest.param({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}, False, id="terminating"),
    pytest.param(None, False, id="absent"),
])
def test_namespace_active(ns: dict[str, Any] | None, active: bool) -> None:
    assert namespace_active(ns) is active


async def _has_default(client: ApiClient, namespace: str) -> bool:
    try:
        await client.get(SERVICEACCOUNTS, "default", namespace=namespace)
    except NotFoundError:
        return False
    return True


async def test_default_serviceaccount_appears_in_new_namespace(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        await eventually(lambda: _has_default(client, "team-a"))


async def _default_uid(client: ApiClient, namespace: str) -> str | None:
    try:
        account = await client.get(SERVICEACCOUNTS, "default", namespace=namespace)
    except NotFoundError:
        return None
    return str(account["metadata"]["uid"])


async def test_deleted_default_serviceaccount_is_recreated(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        await eventually(lambda: _has_default(client, "default"))
        old_uid = await _default_uid(client, "default")
        assert old_uid
        await client.delete(SERVICEACCOUNTS, "default", namespace="default")

        async def recreated() -> bool:
            # A new object, not the old one still standing: the uid tells them apart.
            uid = await _default_uid(client, "default")
            return uid is not None and uid != old_uid

        await eventually(recreated, what="a new default ServiceAccount (new uid)")
