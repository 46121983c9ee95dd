"""EndpointSlice controller: keeps the ``discovery.k8s.io/v1`` EndpointSlices of every selector-bearing Service.

Started by ``controllers.manager`` beside the Endpoints controller. Informers on Services, Pods and
EndpointSlices enqueue the key ``namespace/name`` of every Service a change may affect; ``sync`` is
level-triggered: it reads the caches, plans the slices with :func:`plan` (pure, unit-tested) and
writes only what differs. As Kubernetes' endpointslice controller (pkg/controller/endpointslice):

- every pod the selector matches that has an IP and is not terminal becomes an endpoint
  (``addresses: [podIP]``) with ``conditions`` ``ready`` (Ready and not terminating, or always with
  ``publishNotReadyAddresses``), ``serving`` (Ready) and ``terminating`` (deletionTimestamp set), its
  ``nodeName``, a ``targetRef`` to the pod, and ``hostname`` when the pod's ``hostname`` is set and its
  ``subdomain`` names the Service;
- endpoints are grouped by their resolved port set (named ``targetPort`` resolved per pod), at most
  :data:`MAX_ENDPOINTS_PER_SLICE` per slice; an endpoint stays in the slice it is in while it is
  wanted, new ones fill slices with room first, so a change rewrites as few slices as possible;
- slices are ``<service>-<random>``, ``addressType: IPv4``, labelled
  ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by:
  endpointslice-controller.k8s.io`` (plus the Service's labels and the headless marker), owned by the
  Service (controller reference, so the garbage collector removes them with it too); a Service
  without endpoints keeps one empty placeholder slice;
- slices not managed by this controller (the apiserver's ``default/kubernetes`` slice, user slices)
  are never touched; Services without a selector are left alone.

Stale caches: after a write the informer may lag; :class:`_Tracker` remembers the resourceVersion
of each slice this controller wrote (or that it deleted one) and a sync whose cache has not caught
up is retried shortly instead of acting on old data (no duplicate slices).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controllers.endpoints import HEADLESS_LABEL, pod_is_ready, resolve_target_port, service_selects
from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.client.store import INDEX_NAMESPACE
from machinery.errors import AlreadyExistsError, ConflictError, ForbiddenError, NotFoundError
from machinery.meta import object_key, random_suffix
from machinery.resources import ENDPOINTSLICES, PODS, SERVICES

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
_STALE_RETRY = 0.2

Obj = dict[str, Any]
PortKey = tuple[tuple[str, int, str, str], ...]  # (name, port, protocol, appProtocol) sorted


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def endpoint_for(pod: Obj, service: Obj) -> Obj:
    """The slice endpoint of one pod (see the module docstring for each field)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    terminating = bool(meta.get("deletionTimestamp"))
    serving = pod_is_ready(pod)
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: Obj = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": publish or (serving and not terminating), "serving": serving,
                       "terminating": terminating},
    }
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        endpoint["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    endpoint["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
                             "uid": meta.get("uid", "")}
    return endpoint


def _endpoint_id(endpoint: Obj) -> str:
    return str((endpoint.get("targetRef") or {}).get("uid") or ",".join(endpoint.get("addresses") or []))


def _port_key(ports: list[Obj] | None) -> PortKey:
    return tuple(sorted((str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"),
                         str(p.get("appProtocol") or "")) for p in ports or []))


def _ports(key: PortKey) -> list[Obj]:
    out = []
    for name, number, protocol, app in key:
        port: Obj = {"name": name, "port": number, "protocol": protocol}
        if app:
            port["appProtocol"] = app
        out.append(port)
    return out


def desired_endpoints(service: Obj, pods: list[Obj]) -> dict[PortKey, list[Obj]]:
    """Endpoints of the Service grouped by resolved port set, each group sorted by address."""
    spec = service.get("spec") or {}
    service_ports: list[Obj] = spec.get("ports") or []
    groups: dict[PortKey, list[Obj]] = {}
    for pod in pods:
        if not (pod.get("status") or {}).get("podIP") or _terminal(pod):
            continue
        ports: list[Obj] = []
        for sp in service_ports:
            number = resolve_target_port(pod, sp)
            if number is not None:
                ports.append({"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol") or "TCP",
                              "appProtocol": sp.get("appProtocol") or ""})
        if service_ports and not ports:
            continue
        groups.setdefault(_port_key(ports), []).append(endpoint_for(pod, service))
    for endpoints in groups.values():
        endpoints.sort(key=lambda e: (e["addresses"][0], _endpoint_id(e)))
    return groups


def desired_labels(service: Obj) -> dict[str, str]:
    """The Service's labels, the service-name and managed-by labels, and the headless marker."""
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)}
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def owner_reference(service: Obj) -> Obj:
    """The Service as the slices' controller reference."""
    meta = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


@dataclass
class Plan:
    """Slices to create (bodies without a name yet), update (full objects) and delete (names)."""

    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def plan(service: Obj, pods: list[Obj], existing: list[Obj], *,
         max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> Plan:
    """What to write so the managed slices ``existing`` hold exactly the Service's endpoints."""
    labels = desired_labels(service)
    owner = owner_reference(service)
    wanted = desired_endpoints(service, pods)
    result = Plan()
    by_key: dict[PortKey, list[Obj]] = {}
    for slice_ in sorted(existing, key=lambda s: str(s["metadata"].get("name"))):
        by_key.setdefault(_port_key(slice_.get("ports")), []).append(slice_)
    placeholder = not wanted
    if placeholder:
        wanted = {(): []}  # a Service without endpoints keeps one empty slice: reuse one if there is one
        if () not in by_key and by_key:
            first = min(by_key)
            by_key[()] = [by_key[first].pop(0)]
    for key, endpoints in wanted.items():
        todo = {_endpoint_id(e): e for e in endpoints}
        filled: list[tuple[Obj, list[Obj]]] = []
        for slice_ in by_key.pop(key, []):
            kept = []
            for current in slice_.get("endpoints") or []:
                new = todo.pop(_endpoint_id(current), None)
                if new is not None:
                    kept.append(new)
            filled.append((slice_, kept))
        rest = [e for e in endpoints if _endpoint_id(e) in todo]
        for _slice, kept in filled:
            room = max_per_slice - len(kept)
            if room > 0 and rest:
                kept.extend(rest[:room])
                rest = rest[room:]
        for i, (slice_, kept) in enumerate(filled):
            if not kept and not (placeholder and i == 0):
                result.delete.append(slice_["metadata"]["name"])
                continue
            body = dict(slice_, addressType="IPv4", endpoints=kept, ports=_ports(key),
                        metadata=dict(slice_["metadata"], labels=labels, ownerReferences=[owner]))
            if _differs(slice_, body):
                result.update.append(body)
        chunks = [rest[i:i + max_per_slice] for i in range(0, len(rest), max_per_slice)]
        if placeholder and not filled:
            chunks = [[]]
        for chunk in chunks:
            result.create.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": service["metadata"].get("namespace", ""), "labels": labels,
                             "ownerReferences": [owner]},
                "addressType": "IPv4", "endpoints": chunk, "ports": _ports(key)})
    for slices in by_key.values():  # port sets no longer wanted
        result.delete.extend(s["metadata"]["name"] for s in slices)
    return result


def _differs(current: Obj, desired: Obj) -> bool:
    meta, want = current["metadata"], desired["metadata"]
    return (current.get("endpoints") or []) != desired["endpoints"] or \
        (current.get("ports") or []) != desired["ports"] or current.get("addressType") != "IPv4" or \
        (meta.get("labels") or {}) != want["labels"] or (meta.get("ownerReferences") or []) != want["ownerReferences"]


class _Tracker:
    """What this controller last wrote per slice, to tell a lagging cache from the truth."""

    def __init__(self) -> None:
        self._written: dict[str, dict[str, int | None]] = {}

    def wrote(self, service_key: str, name: str, resource_version: str | None) -> None:
        rv = int(resource_version) if resource_version and resource_version.isdigit() else None
        self._written.setdefault(service_key, {})[name] = rv if resource_version is not None else -1

    def stale(self, service_key: str, cached: dict[str, Obj]) -> bool:
        for name, rv in list(self._written.get(service_key, {}).items()):
            current = cached.get(name)
            if rv == -1:
                behind = current is not None  # deleted here, still in the cache
            else:
                behind = current is None or (rv is not None and
                                             int(current["metadata"].get("resourceVersion") or 0) < rv)
            if behind:
                return True
        self._written.pop(service_key, None)
        return False

    def forget(self, service_key: str) -> None:
        self._written.pop(service_key, None)


class EndpointSliceController:
    """Service + Pods → EndpointSlices, one idempotent ``sync(namespace/name)`` per Service."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings, *,
                 max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> None:
        self._client = client
        self._services = factory.informer(SERVICES)
        self._pods = factory.informer(PODS)
        self._slices = factory.informer(ENDPOINTSLICES)
        self.max_per_slice = max_endpoints_per_slice
        self.queue = settings.workqueue("endpointslice")
        self._tracker = _Tracker()
        self._services.add_handler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n),
                                   on_delete=self._enqueue)
        self._pods.add_handler(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        self._slices.add_handler(on_add=self._slice_changed, on_update=lambda _o, n: self._slice_changed(n),
                                 on_delete=self._slice_changed)

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def _slice_changed(self, slice_: Obj) -> None:
        labels = slice_["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME and labels.get(SERVICE_NAME_LABEL):
            self.queue.add(f"{slice_['metadata'].get('namespace', '')}/{labels[SERVICE_NAME_LABEL]}")

    def _pod_changed(self, pod: Obj) -> None:
        for svc in self._services.store.by_index(INDEX_NAMESPACE, pod["metadata"].get("namespace", "")):
            if service_selects(svc, pod):
                self._enqueue(svc)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod_changed(old)
        self._pod_changed(new)

    def _managed(self, namespace: str, name: str) -> dict[str, Obj]:
        found = {}
        for slice_ in self._slices.store.by_index(INDEX_NAMESPACE, namespace):
            labels = slice_["metadata"].get("labels") or {}
            if labels.get(SERVICE_NAME_LABEL) == name and labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME:
                found[slice_["metadata"]["name"]] = slice_
        return found

    async def sync(self, key: str) -> None:
        """Bring the managed slices of the Service ``key`` in line with its pods."""
        namespace, _, name = key.partition("/")
        existing = self._managed(namespace, name)
        if self._tracker.stale(key, existing):
            self.queue.add_after(key, _STALE_RETRY)
            return
        service = self._services.store.get(key)
        if service is None or not (service.get("spec") or {}).get("selector"):
            for slice_name in existing:
                await self._delete(key, namespace, slice_name)
            return
        pods = [p for p in self._pods.store.by_index(INDEX_NAMESPACE, namespace) if service_selects(service, p)]
        todo = plan(service, pods, list(existing.values()), max_per_slice=self.max_per_slice)
        try:
            for body in todo.update:
                try:
                    written = await self._client.update(ENDPOINTSLICES, body)
                except ConflictError:
                    self.queue.add_after(key, _STALE_RETRY)
                    return
                self._tracker.wrote(key, written["metadata"]["name"], written["metadata"].get("resourceVersion"))
            for body in todo.create:
                body["metadata"]["name"] = f"{name[:63 - 6]}-{random_suffix(5)}"
                try:
                    written = await self._client.create(ENDPOINTSLICES, body, namespace=namespace)
                except AlreadyExistsError:
                    self.queue.add_rate_limited(key)
                    return
                self._tracker.wrote(key, written["metadata"]["name"], written["metadata"].get("resourceVersion"))
            for slice_name in todo.delete:
                await self._delete(key, namespace, slice_name)
        except ForbiddenError:
            log.debug("namespace of %s is terminating; not writing endpointslices", key)
        if todo.create or todo.update or todo.delete:
            log.debug("endpointslices of %s: %d created, %d updated, %d deleted", key, len(todo.create),
                      len(todo.update), len(todo.delete))

    async def _delete(self, key: str, namespace: str, name: str) -> None:
        try:
            await self._client.delete(ENDPOINTSLICES, name, namespace=namespace)
        except NotFoundError:
            pass
        self._tracker.wrote(key, name, None)

    async def run(self, workers: int) -> None:
        """Process Services until cancelled, once the caches have synced."""
        await wait_for_cache_sync(self._services, self._pods, self._slices)
        await run_workers(self.queue, self.sync, workers=workers, name="endpointslice")
