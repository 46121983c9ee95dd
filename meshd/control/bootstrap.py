"""What meshd puts in the cluster at start: its namespace, the ``istiod`` Service, Endpoints and
EndpointSlice, and the webhook configurations that point the apiserver at it.

Called once by :mod:`meshd.control.server` (idempotent: create, or update what differs).

* Namespace ``istio-system``.
* Service ``istiod`` (no selector; ports ``grpc-xds`` 15012, ``https-webhook`` 443 → 15017 as in
  Istio, and 15017 itself; the target ports are where meshd listens, free ports on a hollow
  cluster) and its Endpoints and EndpointSlice (a selectorless Service's endpoints are its
  owner's to write), naming the host address meshd listens on (the pod network's gateway on
  Docker clusters, 127.0.0.1 on hollow ones), as ``default/kubernetes`` names the apiserver.
  Pods dial ``istiod.istio-system.svc:15012``; the apiserver resolves the webhook Service to
  this endpoint.
* MutatingWebhookConfiguration ``istio-sidecar-injector`` as the injector describes it
  (:func:`meshd.control.injector.webhook_configuration`: Istio's two webhooks, ``failurePolicy:
  Fail``, path ``/inject``).
* ValidatingWebhookConfiguration ``istio-validator-istio-system`` for the networking.istio.io
  and security.istio.io kinds, path ``/validate``.

Both webhook configurations carry the mesh root as ``caBundle``.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from machinery.client import ApiClient
from machinery.errors import AlreadyExistsError, ConflictError, NotFoundError
from machinery.resources import (
    ENDPOINTS,
    ENDPOINTSLICES,
    MUTATINGWEBHOOKCONFIGURATIONS,
    NAMESPACES,
    SERVICES,
    VALIDATINGWEBHOOKCONFIGURATIONS,
    ResourceInfo,
)
from meshd.api.identity import DISCOVERY_PORT
from meshd.control import injector
from meshd.control.settings import WEBHOOK_PORT, MeshdSettings

__all__ = ["INJECTOR_CONFIG", "SERVICE_NAME", "VALIDATOR_CONFIG", "covers", "ensure_bootstrap", "ensure_webhooks"]

log = logging.getLogger(__name__)

SERVICE_NAME = "istiod"
INJECTOR_CONFIG = "istio-sidecar-injector"
VALIDATOR_CONFIG = "istio-validator-istio-system"
_LABELS = {"app": "istiod", "istio": "pilot", "app.kubernetes.io/managed-by": "kubelab-meshd"}
_SLICE_MANAGER = "meshd.kubelab.dev"
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _service_ports(settings: MeshdSettings) -> list[dict[str, Any]]:
    return [
        {"name": "grpc-xds", "port": DISCOVERY_PORT, "protocol": "TCP", "targetPort": settings.discovery_port},
        {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": settings.webhook_port},
        {"name": "https-webhook-direct", "port": WEBHOOK_PORT, "protocol": "TCP", "targetPort": settings.webhook_port},
    ]


def covers(current: Any, desired: Any) -> bool:
    """Whether ``current`` holds everything ``desired`` says (fields the apiserver defaulted are
    extra, not a difference)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(covers(current.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(current, list) and len(current) == len(desired)
                and all(covers(c, d) for c, d in zip(current, desired, strict=True)))
    return bool(current == desired)


async def _apply(client: ApiClient, resource: ResourceInfo, desired: dict[str, Any],
                 fields: tuple[str, ...]) -> None:
    """Create ``desired``, or update its ``fields`` when they differ (re-read on conflict)."""
    meta = desired["metadata"]
    namespace = meta.get("namespace")
    for _ in range(5):
        try:
            current = await client.get(resource, meta["name"], namespace=namespace)
        except NotFoundError:
            try:
                await client.create(resource, desired, namespace=namespace)
                log.info("created %s %s", resource.kind, meta["name"])
                return
            except AlreadyExistsError:
                continue
        if all(covers(current.get(f), desired.get(f)) for f in fields):
            return
        updated = {**current, **{f: desired[f] for f in fields if f in desired}}
        try:
            await client.update(resource, updated)
            log.info("updated %s %s", resource.kind, meta["name"])
            return
        except ConflictError:
            continue
    raise ConflictError(f"{resource.kind} {meta['name']} kept changing while meshd updated it")


async def ensure_bootstrap(client: ApiClient, settings: MeshdSettings) -> None:
    """Namespace, Service, Endpoints and EndpointSlice."""
    try:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": settings.namespace}})
    except AlreadyExistsError:
        pass
    ports = _service_ports(settings)
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": SERVICE_NAME, "namespace": settings.namespace, "labels": _LABELS},
               "spec": {"type": "ClusterIP", "ports": ports}}
    try:
        current = await client.get(SERVICES, SERVICE_NAME, namespace=settings.namespace)
    except NotFoundError:
        await _apply(client, SERVICES, service, ("spec",))
    else:
        if [(p.get("name"), p.get("port"), p.get("targetPort")) for p in current["spec"].get("ports") or []] != \
                [(p["name"], p["port"], p["targetPort"]) for p in ports]:
            current["spec"]["ports"] = ports
            await client.update(SERVICES, current)
    target_ports = [{"name": p["name"], "port": p["targetPort"], "protocol": "TCP"} for p in ports]
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": SERVICE_NAME, "namespace": settings.namespace,
                              "labels": {**_LABELS, "endpointslice.kubernetes.io/skip-mirror": "true"}},
                 "subsets": [{"addresses": [{"ip": settings.endpoint_address}], "ports": target_ports}]}
    await _apply(client, ENDPOINTS, endpoints, ("subsets",))
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SERVICE_NAME, "namespace": settings.namespace,
                     "labels": {**_LABELS, _SERVICE_NAME_LABEL: SERVICE_NAME,
                                "endpointslice.kubernetes.io/managed-by": _SLICE_MANAGER}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [settings.endpoint_address], "conditions": {"ready": True}}],
        "ports": target_ports}
    await _apply(client, ENDPOINTSLICES, endpoint_slice, ("endpoints", "ports"))


def _client_config(settings: MeshdSettings, path: str, ca_bundle: str) -> dict[str, Any]:
    return {"service": {"name": SERVICE_NAME, "namespace": settings.namespace, "path": path, "port": 443},
            "caBundle": ca_bundle}


def injector_configuration(settings: MeshdSettings, root_pem: str) -> dict[str, Any]:
    """The injector's own description of its webhook configuration, pointed at this meshd."""
    ca = base64.b64encode(root_pem.encode()).decode()
    return injector.webhook_configuration(ca, namespace=settings.namespace, service=SERVICE_NAME)


def validator_configuration(settings: MeshdSettings, root_pem: str) -> dict[str, Any]:
    ca = base64.b64encode(root_pem.encode()).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VALIDATOR_CONFIG, "labels": _LABELS},
        "webhooks": [{
            "name": "validation.istio.io", "clientConfig": _client_config(settings, "/validate", ca),
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["networking.istio.io", "security.istio.io"],
                       "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
        }],
    }


async def ensure_webhooks(client: ApiClient, settings: MeshdSettings, root_pem: str) -> None:
    await _apply(client, MUTATINGWEBHOOKCONFIGURATIONS, injector_configuration(settings, root_pem), ("webhooks",))
    await _apply(client, VALIDATINGWEBHOOKCONFIGURATIONS, validator_configuration(settings, root_pem), ("webhooks",))
