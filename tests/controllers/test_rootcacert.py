"""Root CA publisher against the embedded apiserver: ``kube-root-ca.crt`` in every namespace,
holding the CA the controller-manager's kubeconfig trusts, repaired when edited."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from controllers.rootcacert import CONFIGMAP_NAME, RootCACertPublisher
from controllers.settings import ControllerManagerSettings
from machinery.client import InformerFactory
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import CONFIGMAPS, NAMESPACES
from tests.controllers.helpers import eventually, running_controller


def running(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[ApiClient]:
    def make(client: ApiClient, factory: InformerFactory) -> Any:
        settings = ControllerManagerSettings(kubeconfig=tmp_path / "kubeconfig")
        return RootCACertPublisher(client, factory, settings)

    return running_controller(tmp_path, make, workers=1, name="root-ca-cert-publisher")


async def _ca_in(client: ApiClient, namespace: str) -> str | None:
    try:
        cm = await client.get(CONFIGMAPS, CONFIGMAP_NAME, namespace=namespace)
    except NotFoundError:
        return None
    return (cm.get("data") or {}).get("ca.crt")


async def test_every_namespace_gets_the_cluster_ca(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        ca = (tmp_path / "pki" / "ca.crt").read_text()
        assert "BEGIN CERTIFICATE" in ca
        for ns in ("default", "kube-system", "kube-public"):
            await eventually(functools.partial(_has, client, ns, ca))
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        await eventually(lambda: _has(client, "team-a", ca))


async def _has(client: ApiClient, namespace: str, ca: str) -> bool:
    return await _ca_in(client, namespace) == ca


async def test_edited_or_deleted_configmap_is_repaired(tmp_path: Path) -> None:
    async with running(tmp_path) as client:
        ca = (tmp_path / "pki" / "ca.crt").read_text()
        await eventually(lambda: _has(client, "default", ca))
        cm = await client.get(CONFIGMAPS, CONFIGMAP_NAME, namespace="default")
        cm["data"] = {"ca.crt": "tampered"}
        await client.update(CONFIGMAPS, cm)
        await eventually(lambda: _has(client, "default", ca))
        await client.delete(CONFIGMAPS, CONFIGMAP_NAME, namespace="default")
        await eventually(lambda: _has(client, "default", ca))
