"""Objects every cluster starts with: the ``default``, ``kube-system``, ``kube-public`` and
``kube-node-lease`` namespaces and the ``default/kubernetes`` Service (created once; existing
ones are left alone), whose Endpoints name where this apiserver listens for pods — the advertise
address (the host on the pod network) or the bind address — and are rewritten on every start, as
kube-apiserver's endpoint reconciler keeps them, so in-cluster clients reach it through the
Service's ClusterIP.

The system namespaces also get their ``default`` ServiceAccount at start (the controller-manager
keeps one in every namespace; making the first ones here lets pods in the system namespaces be
admitted with their token volume before it has run).

As on a kubeadm cluster, ``kube-system/kube-dns`` is the cluster DNS Service, on the tenth address of
the service CIDR (``10.96.0.10`` by default), the nameserver in every pod's ``resolv.conf``. The
cluster DNS server listens on the node at the advertised address, so its Endpoints (``dns`` 53/UDP,
``dns-tcp`` 53/TCP) name that address and the node's service proxy DNATs the ClusterIP to it. Both
Services without a selector also get an EndpointSlice named after them, labelled
``kubernetes.io/service-name`` (no ``managed-by`` label: the EndpointSlice controller leaves them
alone), rewritten with the Endpoints on every start.

Like k3s, a cluster starts with the ``local-path`` StorageClass (provisioner ``rancher.io/local-path``,
``WaitForFirstConsumer``, ``Delete``), annotated as the default class; it is created when missing and
otherwise left as the administrator made it."""

from __future__ import annotations

import copy
import ipaddress
import logging
from typing import Any

from apiserver.context import ApiContext
from apiserver.write_options import WriteOptions
from machinery.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from machinery.resources import ResourceInfo, lookup

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DNS_SERVICE = "kube-dns"
DNS_NAMESPACE = "kube-system"
DNS_PORTS = ({"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"})
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def cluster_dns_ip(service_cidr: str) -> str:
    """The kube-dns ClusterIP: the tenth address of the service CIDR, as kubeadm picks it."""
    return str(ipaddress.ip_network(service_cidr).network_address + 10)


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
    await ensure_cluster_dns_service(ctx)


async def ensure_cluster_dns_service(ctx: ApiContext) -> None:
    """``kube-system/kube-dns`` on :func:`cluster_dns_ip` (created once; an existing one is left alone)."""
    resource = lookup("", "v1", "services")
    assert resource is not None
    if await ctx.storage.get(resource.storage_key(DNS_NAMESPACE, DNS_SERVICE)) is not None:
        return
    svc = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE,
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": cluster_dns_ip(ctx.settings.service_cidr), "type": "ClusterIP",
                 "sessionAffinity": "None", "ports": [dict(p, targetPort=p["port"]) for p in DNS_PORTS]},
    }
    try:
        await ctx.registry(resource).create(DNS_NAMESPACE, svc, WriteOptions())
    except AlreadyExistsError:
        pass
    except ApiError as exc:  # the address is taken by a Service made before this one existed
        log.warning("could not create the %s/%s Service: %s", DNS_NAMESPACE, DNS_SERVICE, exc)


def advertised_address(ctx: ApiContext) -> str:
    """The address pods use to reach this apiserver."""
    settings = ctx.settings
    if settings.advertise_address:
        return settings.advertise_address
    return "127.0.0.1" if settings.bind_address in ("0.0.0.0", "") else settings.bind_address


async def ensure_kubernetes_endpoints(ctx: ApiContext, port: int) -> None:
    """Endpoints and EndpointSlices of ``default/kubernetes`` (this apiserver's advertised address and
    port) and of ``kube-system/kube-dns`` (the cluster DNS on the same address, port 53)."""
    address = advertised_address(ctx)
    await _ensure_endpoints(ctx, "default", "kubernetes", address,
                            [{"name": "https", "port": port, "protocol": "TCP"}])
    await _ensure_endpoints(ctx, DNS_NAMESPACE, DNS_SERVICE, address, [dict(p) for p in DNS_PORTS])


async def _ensure_endpoints(ctx: ApiContext, namespace: str, name: str, address: str,
                            ports: list[dict[str, Any]]) -> None:
    subsets = [{"addresses": [{"ip": address}], "ports": ports}]
    await _ensure(ctx, lookup("", "v1", "endpoints"), namespace, {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets}, ("subsets",))
    await _ensure(ctx, lookup("discovery.k8s.io", "v1", "endpointslices"), namespace, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_NAME_LABEL: name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [dict(p) for p in ports]}, ("addressType", "endpoints", "ports"))


async def _ensure(ctx: ApiContext, resource: ResourceInfo | None, namespace: str, body: dict[str, Any],
                  fields: tuple[str, ...]) -> None:
    """Create ``body`` or make the stored object's ``fields`` equal to it (retrying conflicts)."""
    assert resource is not None
    registry = ctx.registry(resource)
    name = body["metadata"]["name"]
    for _ in range(5):
        try:
            current = await registry.get(namespace, name)
        except NotFoundError:
            try:
                await registry.create(namespace, body, WriteOptions())
                return
            except AlreadyExistsError:
                continue
        if all(current.get(f) == body[f] for f in fields):
            return
        try:
            await registry.update(namespace, name, {**current, **{f: body[f] for f in fields}}, WriteOptions())
            return
        except ConflictError:
            continue
    log.warning("could not set the %s of %s/%s", resource.plural, namespace, name)


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


DEFAULT_STORAGE_CLASS: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
}


async def ensure_default_storage_class(ctx: ApiContext) -> None:
    """The ``local-path`` StorageClass, unless it exists."""
    resource = lookup("storage.k8s.io", "v1", "storageclasses")
    assert resource is not None
    if await ctx.storage.get(resource.storage_key(None, "local-path")) is not None:
        return
    try:
        await ctx.registry(resource).create(None, copy.deepcopy(DEFAULT_STORAGE_CLASS), WriteOptions())
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
