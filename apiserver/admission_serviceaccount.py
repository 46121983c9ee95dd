"""ServiceAccount admission: every new pod runs as a service account and, unless it opts out,
gets the projected API credentials volume — Kubernetes' ``ServiceAccount`` admission plugin.

On pod create (mirror pods, which carry ``kubernetes.io/config.mirror``, are left alone):

* ``spec.serviceAccountName`` (and the deprecated ``serviceAccount``) default to ``default``;
* a pod naming a service account that does not exist is refused with a 403,
  ``pods "x" is forbidden: error looking up service account ns/name: serviceaccount "name" not found``.
  The ``default`` account is exempt: it is made by the controller-manager moments after its
  namespace, and a pod racing it (or a cluster without a controller-manager) still gets its
  volume, whose token the kubelet obtains once the account exists;
* unless ``automountServiceAccountToken: false`` on the pod (or, when the pod does not say, on the
  service account), a projected volume ``kube-api-access-<5 random chars>`` is added — a
  3607-second ``serviceAccountToken`` at ``token``, ``ca.crt`` from the ``kube-root-ca.crt``
  ConfigMap, and ``namespace`` from the downward API, mode 0644 — and mounted read-only at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` in every init and app container that does not
  already mount something there.

Service accounts are read from the apiserver's watch cache, then the store (the cache may not have
seen one created a moment ago).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from machinery.errors import ForbiddenError

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_SECONDS = 3607
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet: no vowels, no 0/1/3

ServiceAccountGetter = Callable[[str, str], Awaitable[dict[str, Any] | None]]
"""(namespace, name) -> the ServiceAccount, or None."""


def _suffix() -> str:
    return "".join(random.choice(_SUFFIX_CHARS) for _ in range(5))


def api_access_volume(name: str) -> dict[str, Any]:
    """The projected volume Kubernetes adds for a pod's API credentials."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


class ServiceAccountAdmission:
    """The admission step for pods; ``admit`` has the registry's mutating-admission signature."""

    def __init__(self, get_service_account: ServiceAccountGetter) -> None:
        self._get = get_service_account

    async def admit(self, pod: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        if old is not None:
            return
        meta = pod.setdefault("metadata", {})
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = sa_name
        namespace = str(meta.get("namespace") or "default")
        sa = await self._get(namespace, sa_name)
        if sa is None and sa_name != "default":
            pod_name = meta.get("name") or meta.get("generateName") or ""
            raise ForbiddenError(
                f'pods "{pod_name}" is forbidden: error looking up service account {namespace}/{sa_name}: '
                f'serviceaccount "{sa_name}" not found', name=str(pod_name), kind="pods")
        automount = spec.get("automountServiceAccountToken")
        if automount is None and sa is not None:
            automount = sa.get("automountServiceAccountToken")
        if automount is False:
            return
        add_api_access(spec)


def add_api_access(spec: dict[str, Any]) -> None:
    """Add the credentials volume and its mounts to ``spec`` (once; a container that already
    mounts something at the path keeps its own)."""
    volumes = spec.setdefault("volumes", [])
    existing = next((v["name"] for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    name = existing or VOLUME_PREFIX + _suffix()
    if existing is None:
        taken = {v.get("name") for v in volumes}
        while name in taken:
            name = VOLUME_PREFIX + _suffix()
        volumes.append(api_access_volume(name))
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            mounts = container.setdefault("volumeMounts", [])
            if any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})
