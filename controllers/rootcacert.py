"""Root CA publisher: every active namespace has the ConfigMap ``kube-root-ca.crt`` holding the
cluster CA (key ``ca.crt``), as Kubernetes' ``root-ca-cert-publisher`` keeps it.

Started by ``controllers.manager``. Pods read it through their ``kube-api-access-*`` projected
volume to trust the apiserver. Namespace adds/updates and any change to a ``kube-root-ca.crt``
ConfigMap enqueue the namespace; ``sync`` creates the ConfigMap when missing and puts back
``ca.crt`` when it differs (an edited or emptied copy is repaired). The CA is the one the
controller-manager's own kubeconfig trusts (kube-controller-manager's ``--root-ca-file``); without
one the controller has nothing to publish and stays idle. Terminating namespaces are skipped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controllers.serviceaccount import namespace_active
from machinery.client import wait_for_cache_sync
from machinery.client.controller import run_workers
from machinery.errors import AlreadyExistsError, ConflictError, ForbiddenError, NotFoundError
from machinery.kubeconfig import load_kubeconfig
from machinery.resources import CONFIGMAPS, NAMESPACES

if TYPE_CHECKING:
    from controllers.settings import ControllerManagerSettings
    from machinery.client.informer import InformerFactory
    from machinery.client.rest import ApiClient

log = logging.getLogger(__name__)

CONFIGMAP_NAME = "kube-root-ca.crt"
CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


def _cluster_ca(settings: ControllerManagerSettings) -> str:
    if settings.kubeconfig is None:
        return ""
    try:
        ca = load_kubeconfig(settings.kubeconfig).ca_pem
    except (OSError, ValueError, KeyError) as exc:
        log.warning("root CA publisher: cannot read the CA from %s: %s", settings.kubeconfig, exc)
        return ""
    return ca.decode() if ca else ""


class RootCACertPublisher:
    """Keeps ``kube-root-ca.crt`` in every namespace (queue keys: namespace names)."""

    def __init__(self, client: ApiClient, factory: InformerFactory, settings: ControllerManagerSettings,
                 *, ca_pem: str | None = None) -> None:
        self._client = client
        self.ca = ca_pem if ca_pem is not None else _cluster_ca(settings)
        self._namespaces = factory.informer(NAMESPACES)
        self._configmaps = factory.informer(CONFIGMAPS)
        self.queue = settings.workqueue("root-ca-cert-publisher")
        self._namespaces.add_handler(on_add=self._enqueue_ns, on_update=lambda _o, n: self._enqueue_ns(n))
        self._configmaps.add_handler(on_update=lambda _o, n: self._configmap_changed(n),
                                     on_delete=self._configmap_changed)

    def _enqueue_ns(self, ns: dict[str, Any]) -> None:
        self.queue.add(str(ns["metadata"]["name"]))

    def _configmap_changed(self, cm: dict[str, Any]) -> None:
        if cm["metadata"].get("name") == CONFIGMAP_NAME:
            self.queue.add(str(cm["metadata"].get("namespace", "")))

    async def sync(self, namespace: str) -> None:
        """Create or repair ``kube-root-ca.crt`` in ``namespace``."""
        if not self.ca or not namespace_active(self._namespaces.store.get(namespace)):
            return
        current = self._configmaps.store.get(f"{namespace}/{CONFIGMAP_NAME}")
        try:
            if current is None:
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace,
                                     "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                        "data": {CA_KEY: self.ca}}
                await self._client.create(CONFIGMAPS, body, namespace=namespace)
                log.info("published %s/%s", namespace, CONFIGMAP_NAME)
            elif (current.get("data") or {}) != {CA_KEY: self.ca}:
                updated = {**current, "data": {CA_KEY: self.ca}}
                await self._client.update(CONFIGMAPS, updated)
                log.info("repaired %s/%s", namespace, CONFIGMAP_NAME)
        except (AlreadyExistsError, ConflictError):
            self.queue.add_rate_limited(namespace)  # the cache was behind: look again
        except (ForbiddenError, NotFoundError):
            log.debug("namespace %s is going away; no %s", namespace, CONFIGMAP_NAME)

    async def run(self, workers: int) -> None:
        """Process namespaces until cancelled, once the caches have synced."""
        await wait_for_cache_sync(self._namespaces, self._configmaps)
        await run_workers(self.queue, self.sync, workers=workers, name="root-ca-cert-publisher")
