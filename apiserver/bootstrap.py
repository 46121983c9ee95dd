"""Objects every cluster starts with: the ``default``, ``kube-system``, ``kube-public`` and
``kube-node-lease`` namespaces and the ``default/kubernetes`` Service (created once; existing
ones are left alone)."""

from __future__ import annotations

import ipaddress
import logging

from apiserver.context import ApiContext
from apiserver.registry import WriteOptions
from machinery.errors import AlreadyExistsError
from machinery.resources import lookup

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure_kubernetes_service(ctx: ApiContext, port: int) -> None:
    """The ``default/kubernetes`` Service on the first ClusterIP of the service CIDR."""
    resource = lookup("", "v1", "services")
    assert resource is not None
    if await ctx.storage.get(resource.storage_key("default", "kubernetes")) is not None:
        return
    first = str(ipaddress.ip_network(ctx.settings.service_cidr).network_address + 1)
    svc = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": first, "type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    }
    try:
        await ctx.registry(resource).create("default", svc, WriteOptions())
    except AlreadyExistsError:
        pass


async def ensure_system_namespaces(ctx: ApiContext) -> None:
    resource = lookup("", "v1", "namespaces")
    assert resource is not None
    registry = ctx.registry(resource)
    for name in SYSTEM_NAMESPACES:
        if await ctx.storage.get(resource.storage_key(None, name)) is not None:
            continue
        try:
            await registry.create(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                                  WriteOptions())
            log.info("created namespace %s", name)
        except AlreadyExistsError:
            pass
