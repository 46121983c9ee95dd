"""Endpoints controller: keeps one ``Endpoints`` object per selector-bearing Service.

Started by ``controllers.manager``. Informers on Services, Pods and Endpoints enqueue the key
``namespace/name`` of every Service a change may affect; ``sync`` is level-triggered: it reads
the caches, computes the subsets with :func:`desired_subsets` (pure, unit-tested) and writes
only when they differ from what is stored. As in Kubernetes (pkg/controller/endpoint):

- ready pods go to ``addresses``, not-ready ones to ``notReadyAddresses`` (all of them to
  ``addresses`` when the Service sets ``publishNotReadyAddresses``);
- pods without an IP, terminal pods and terminating pods are left out;
- a named ``targetPort`` is resolved per pod from its containers' ports (a pod lacking the name
  is left out of that port's subset); the protocol must match;
- the Endpoints carries the Service's labels (plus ``service.kubernetes.io/headless`` for a
  headless Service) and is deleted when the Service goes. Services without a selector are
  left alone (their Endpoints are user-managed).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.client.store import INDEX_NAMESPACE
from machinery.errors import AlreadyExistsError, ForbiddenError, NotFoundError
from machinery.meta import object_key
from machinery.resources import ENDPOINTS, PODS, SERVICES
from machinery.selectors import from_match_labels

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"


def pod_is_ready(pod: dict[str, Any]) -> bool:
    """The pod's ``Ready`` condition is ``True``."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def resolve_target_port(pod: dict[str, Any], service_port: dict[str, Any]) -> int | None:
    """The container port a Service port sends to on this pod (``None``: the pod lacks it)."""
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        return int(service_port["port"])
    if isinstance(target, int):
        return target
    if str(target).isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _address(pod: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    spec = pod.get("spec") or {}
    addr: dict[str, Any] = {"ip": pod["status"]["podIP"]}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        addr["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    addr["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
                         "uid": meta.get("uid", "")}
    return addr


def _address_sort_key(addr: dict[str, Any]) -> tuple[str, str]:
    return addr["ip"], (addr.get("targetRef") or {}).get("uid", "")


def desired_subsets(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``subsets`` of the Service's Endpoints given the pods its selector matches.

    Addresses sharing the same resolved port set are packed into one subset (Kubernetes'
    ``RepackSubsets``); addresses and subsets are sorted so equal inputs give equal output.
    """
    spec = service.get("spec") or {}
    tolerate_unready = bool(spec.get("publishNotReadyAddresses"))
    service_ports: list[dict[str, Any]] = spec.get("ports") or []
    headless_no_ports = not service_ports and spec.get("clusterIP") == "None"
    # port-set (tuple of sorted ports) -> (ready, not ready)
    groups: dict[tuple[tuple[str, int, str], ...], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for pod in pods:
        if not (pod.get("status") or {}).get("podIP") or _terminal(pod):
            continue
        if pod["metadata"].get("deletionTimestamp") and not tolerate_unready:
            continue
        ports: list[tuple[str, int, str]] = []
        for sp in service_ports:
            number = resolve_target_port(pod, sp)
            if number is None:
                log.debug("pod %s has no port %r for service %s", object_key(pod), sp.get("targetPort"),
                          object_key(service))
                continue
            ports.append((str(sp.get("name") or ""), number, str(sp.get("protocol") or "TCP")))
        if not ports and not headless_no_ports:
            continue
        ready, not_ready = groups.setdefault(tuple(sorted(ports)), ([], []))
        address = _address(pod, service)
        if tolerate_unready or pod_is_ready(pod):
            ready.append(address)
        else:
            not_ready.append(address)
    subsets: list[dict[str, Any]] = []
    for port_set, (ready, not_ready) in groups.items():
        subset: dict[str, Any] = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_address_sort_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_sort_key)
        if port_set:
            subset["ports"] = [_port(name, number, protocol) for name, number, protocol in port_set]
        subsets.append(subset)
    subsets.sort(key=lambda s: [a["ip"] for a in s.get("addresses", []) + s.get("notReadyAddresses", [])])
    return subsets


def _port(name: str, number: int, protocol: str) -> dict[str, Any]:
    port: dict[str, Any] = {"port": number, "protocol": protocol}
    if name:
        port["name"] = name
    return port


def desired_labels(service: dict[str, Any]) -> dict[str, str]:
    """The Service's labels, plus the headless marker Kubernetes adds."""
    labels = dict(service["metadata"].get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def service_selects(service: dict[str, Any], pod: dict[str, Any]) -> bool:
    """The Service has a selector and it matches the pod (same namespace)."""
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return False
    if service["metadata"].get("namespace") != pod["metadata"].get("namespace"):
        return False
    return from_match_labels(selector).matches(pod["metadata"].get("labels"))


class EndpointsController:
    """Service + Pods -> Endpoints, one idempotent ``sync(namespace/name)`` per Service."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings) -> None:
        self._client = client
        self._settings = settings
        self._services = factory.informer(SERVICES)
        self._pods = factory.informer(PODS)
        self._endpoints = factory.informer(ENDPOINTS)
        self.queue = settings.workqueue("endpoints")
        self._services.add_handler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n),
                                   on_delete=self._enqueue)
        self._pods.add_handler(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        self._endpoints.add_handler(on_update=lambda _o, n: self._enqueue(n), on_delete=self._enqueue)

    def _enqueue(self, obj: dict[str, Any]) -> None:
        self.queue.add(object_key(obj))

    def _pod_changed(self, pod: dict[str, Any]) -> None:
        ns = pod["metadata"].get("namespace", "")
        for svc in self._services.store.by_index(INDEX_NAMESPACE, ns):
            if service_selects(svc, pod):
                self._enqueue(svc)

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod_changed(old)
        self._pod_changed(new)

    async def sync(self, key: str) -> None:
        """Bring the Endpoints named ``key`` in line with its Service and pods."""
        namespace, _, name = key.partition("/")
        service = self._services.store.get(key)
        if service is None:
            try:
                await self._client.delete(ENDPOINTS, name, namespace=namespace)
                log.info("deleted endpoints %s: service gone", key)
            except NotFoundError:
                pass
            return
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return
        pods = [p for p in self._pods.store.by_index(INDEX_NAMESPACE, namespace) if service_selects(service, p)]
        subsets = desired_subsets(service, pods)
        labels = desired_labels(service)
        current = self._endpoints.store.get(key)
        if current is not None and current.get("subsets", []) == subsets and \
                (current["metadata"].get("labels") or {}) == labels:
            return
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints",
                                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                                "subsets": subsets}
        try:
            if current is None:
                await self._client.create(ENDPOINTS, body, namespace=namespace)
            else:
                meta = dict(current["metadata"], labels=labels)
                await self._client.update(ENDPOINTS, dict(current, metadata=meta, subsets=subsets))
        except AlreadyExistsError:
            # Our cache is behind: read the stored object and update it.
            live = await self._client.get(ENDPOINTS, name, namespace=namespace)
            live["metadata"]["labels"] = labels
            live["subsets"] = subsets
            await self._client.update(ENDPOINTS, live)
        except ForbiddenError:
            log.debug("namespace of %s is terminating; not writing endpoints", key)

    async def run(self, workers: int) -> None:
        """Process Services until cancelled, once the caches have synced."""
        await wait_for_cache_sync(self._services, self._pods, self._endpoints)
        await run_workers(self.queue, self.sync, workers=workers, name="endpoints")
