"""The mesh root in every namespace: ConfigMap ``istio-ca-root-cert`` (key ``root-cert.pem``).

As istiod's namespace controller does: sidecars mount it to verify meshd (TLS on 15012) before
they have a certificate, and to verify peers. Namespace adds/updates and any change to an
``istio-ca-root-cert`` ConfigMap (watched with a field selector, not every ConfigMap) enqueue
the namespace; ``sync`` creates the ConfigMap when missing and puts the root back when it differs.
Terminating namespaces are skipped. Started by :mod:`meshd.control.server`.
"""

from __future__ import annotations

import logging
from typing import Any

from machinery.client import ApiClient, InformerFactory, RateLimitingQueue, SharedInformer, wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.errors import AlreadyExistsError, ConflictError, ForbiddenError, NotFoundError
from machinery.resources import CONFIGMAPS, NAMESPACES
from meshd.api.identity import ROOT_CERT_CONFIGMAP

__all__ = ["ROOT_CERT_KEY", "RootCertPublisher"]

log = logging.getLogger(__name__)

ROOT_CERT_KEY = "root-cert.pem"


class RootCertPublisher:
    def __init__(self, client: ApiClient, factory: InformerFactory, root_pem: str) -> None:
        self.client = client
        self.root_pem = root_pem
        self.namespaces = factory.informer(NAMESPACES)
        self.configmaps = SharedInformer(client, CONFIGMAPS, field_selector=f"metadata.name={ROOT_CERT_CONFIGMAP}")
        self.queue = RateLimitingQueue(name="istio-ca-root-cert", base_delay=0.05, max_delay=30.0)
        self.namespaces.add_handler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n))
        self.configmaps.add_handler(on_update=lambda _o, n: self._enqueue_cm(n), on_delete=self._enqueue_cm)

    def _enqueue(self, ns: dict[str, Any]) -> None:
        self.queue.add(str(ns["metadata"]["name"]))

    def _enqueue_cm(self, cm: dict[str, Any]) -> None:
        self.queue.add(str(cm["metadata"].get("namespace", "")))

    async def sync(self, namespace: str) -> None:
        ns = self.namespaces.store.get(namespace)
        if ns is None or (ns.get("metadata") or {}).get("deletionTimestamp") \
                or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        current = self.configmaps.store.get(f"{namespace}/{ROOT_CERT_CONFIGMAP}")
        data = {ROOT_CERT_KEY: self.root_pem}
        try:
            if current is None:
                await self.client.create(CONFIGMAPS, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CERT_CONFIGMAP, "namespace": namespace,
                                 "labels": {"istio.io/config": "true"}},
                    "data": data}, namespace=namespace)
                log.info("published %s/%s", namespace, ROOT_CERT_CONFIGMAP)
            elif (current.get("data") or {}) != data:
                await self.client.update(CONFIGMAPS, {**current, "data": data})
                log.info("repaired %s/%s", namespace, ROOT_CERT_CONFIGMAP)
        except (AlreadyExistsError, ConflictError):
            self.queue.add_rate_limited(namespace)
        except (ForbiddenError, NotFoundError):
            log.debug("namespace %s is going away; no %s", namespace, ROOT_CERT_CONFIGMAP)

    async def run(self, workers: int = 2) -> None:
        await self.configmaps.start()
        try:
            await wait_for_cache_sync(self.namespaces, self.configmaps)
            await run_workers(self.queue, self.sync, workers=workers, name="istio-ca-root-cert")
        finally:
            await self.configmaps.stop()
