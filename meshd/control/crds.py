"""Istio's kinds as meshd serves them: the CRD manifests (package data) and their client handles.

The manifests in ``meshd/control/crds/*.yaml`` are kubelab's own CustomResourceDefinitions for
``networking.istio.io`` (VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar; v1
stored, v1beta1 and v1alpha3 served) and ``security.istio.io`` (PeerAuthentication,
AuthorizationPolicy, RequestAuthentication; v1 stored, v1beta1 served), with Istio's names,
short names and categories. :func:`apply_crds` creates or updates them at meshd's start and waits
until the apiserver serves them (``Established``). The ``ResourceInfo`` handles below let the
informers of :mod:`meshd.control.model` list and watch them at the storage version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources as package_data
from typing import Any

import yaml

from machinery.client import ApiClient
from machinery.errors import AlreadyExistsError, ConflictError, NotFoundError
from machinery.resources import CUSTOMRESOURCEDEFINITIONS, ResourceInfo
from meshd.control.bootstrap import covers

__all__ = [
    "AUTHORIZATION_POLICIES",
    "DESTINATION_RULES",
    "GATEWAYS",
    "ISTIO_RESOURCES",
    "PEER_AUTHENTICATIONS",
    "REQUEST_AUTHENTICATIONS",
    "SERVICE_ENTRIES",
    "SIDECARS",
    "VIRTUAL_SERVICES",
    "apply_crds",
    "load_crds",
]

log = logging.getLogger(__name__)

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"


def _info(group: str, kind: str, plural: str, short: tuple[str, ...] = ()) -> ResourceInfo:
    return ResourceInfo(group, "v1", kind, plural, kind.lower(), True, short)


VIRTUAL_SERVICES = _info(NETWORKING, "VirtualService", "virtualservices", ("vs",))
DESTINATION_RULES = _info(NETWORKING, "DestinationRule", "destinationrules", ("dr",))
GATEWAYS = _info(NETWORKING, "Gateway", "gateways", ("gw",))
SERVICE_ENTRIES = _info(NETWORKING, "ServiceEntry", "serviceentries", ("se",))
SIDECARS = _info(NETWORKING, "Sidecar", "sidecars")
PEER_AUTHENTICATIONS = _info(SECURITY, "PeerAuthentication", "peerauthentications", ("pa",))
AUTHORIZATION_POLICIES = _info(SECURITY, "AuthorizationPolicy", "authorizationpolicies", ("ap",))
REQUEST_AUTHENTICATIONS = _info(SECURITY, "RequestAuthentication", "requestauthentications", ("ra",))
ISTIO_RESOURCES: tuple[ResourceInfo, ...] = (
    VIRTUAL_SERVICES, DESTINATION_RULES, GATEWAYS, SERVICE_ENTRIES, SIDECARS,
    PEER_AUTHENTICATIONS, AUTHORIZATION_POLICIES, REQUEST_AUTHENTICATIONS,
)


def load_crds() -> list[dict[str, Any]]:
    """Every CustomResourceDefinition manifest shipped with meshd, in file order."""
    crds: list[dict[str, Any]] = []
    folder = package_data.files("meshd.control").joinpath("crds")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            crds += [doc for doc in yaml.safe_load_all(entry.read_text()) if doc]
    return crds


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def _apply_one(client: ApiClient, crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    while True:
        try:
            current = await client.get(CUSTOMRESOURCEDEFINITIONS, name)
        except NotFoundError:
            try:
                await client.create(CUSTOMRESOURCEDEFINITIONS, crd)
                log.info("created CustomResourceDefinition %s", name)
                return
            except AlreadyExistsError:
                continue
        if covers(current.get("spec"), crd["spec"]):
            return
        desired = {**crd, "metadata": {**current["metadata"], **crd["metadata"],
                                       "resourceVersion": current["metadata"]["resourceVersion"]}}
        try:
            await client.update(CUSTOMRESOURCEDEFINITIONS, desired)
            log.info("updated CustomResourceDefinition %s", name)
            return
        except ConflictError:
            continue


async def apply_crds(client: ApiClient, *, timeout: float = 30.0) -> None:
    """Create or update every CRD, then wait until each is Established (TimeoutError after ``timeout``)."""
    crds = load_crds()
    for crd in crds:
        await _apply_one(client, crd)
    deadline = time.monotonic() + timeout
    pending = [crd["metadata"]["name"] for crd in crds]
    while pending:
        current = await client.get(CUSTOMRESOURCEDEFINITIONS, pending[0])
        if _established(current):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"CustomResourceDefinition {pending[0]} is not Established after {timeout:g}s")
        await asyncio.sleep(0.1)
