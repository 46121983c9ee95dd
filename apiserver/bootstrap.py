"""Objects every cluster starts with: the ``default``, ``kube-system``, ``kube-public`` and
``kube-node-lease`` namespaces and the ``default/kubernetes`` Service (created once; existing
ones are left alone), whose Endpoints name where this apiserver listens for pods — the advertise
address (the host on the pod network) or the bind address — and are rewritten on every start, as
kube-apiserver's endpoint reconciler keeps them, so in-cluster clients reach it through the
Service's ClusterIP.

The system namespaces also get their ``default`` ServiceAccount at start (the controller-manager
keeps one in every namespace; making the first ones here lets pods in the system namespaces be
admitted with their token volume before it has run)."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from apiserver.context import ApiContext
from apiserver.registry import WriteOptions
from machinery.errors import AlreadyExistsError, ConflictError, NotFoundError
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


def advertised_address(ctx: ApiContext) -> str:
    """The address pods use to reach this apiserver."""
    settings = ctx.settings
    if settings.advertise_address:
        return settings.advertise_address
    return "127.0.0.1" if settings.bind_address in ("0.0.0.0", "") else settings.bind_address


async def ensure_kubernetes_endpoints(ctx: ApiContext, port: int) -> None:
    """``default/kubernetes`` Endpoints: this apiserver's advertised address and port."""
    resource = lookup("", "v1", "endpoints")
    assert resource is not None
    registry = ctx.registry(resource)
    subsets = [{"addresses": [{"ip": advertised_address(ctx)}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
    for _ in range(5):
        try:
            current = await registry.get("default", "kubernetes")
        except NotFoundError:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": "kubernetes", "namespace": "default",
                                 "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                    "subsets": subsets}
            try:
                await registry.create("default", body, WriteOptions())
                return
            except AlreadyExistsError:
                continue
        if current.get("subsets") == subsets:
            return
        try:
            await registry.update("default", "kubernetes", {**current, "subsets": subsets}, WriteOptions())
            return
        except ConflictError:
            continue
    log.warning("could not set the endpoints of default/kubernetes")


async def _create_missing(ctx: ApiContext, plural: str, namespace: str, body: dict[str, Any]) -> None:
    resource = lookup("", "v1", plural)
    assert resource is not None
    if await ctx.storage.get(resource.storage_key(namespace, body["metadata"]["name"])) is not None:
        return
    try:
        await ctx.registry(resource).create(namespace, body, WriteOptions())
    except AlreadyExistsError:
        pass


async def ensure_system_identities(ctx: ApiContext) -> None:
    """The ``default`` ServiceAccount of each system namespace."""
    for ns in SYSTEM_NAMESPACES:
        await _create_missing(ctx, "serviceaccounts", ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}})


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
