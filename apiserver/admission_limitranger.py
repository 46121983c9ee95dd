"""LimitRanger admission: the namespace's LimitRanges default and bound what pods and claims ask for,
as Kubernetes' plugin of that name does.

* Mutating, first among the pod's built-in steps (Kubernetes orders LimitRanger before
  ServiceAccount): on pod create, every container and init container gets the ``default`` limits
  and ``defaultRequest`` requests of the ``Container`` items it lacks, and the pod the
  ``kubernetes.io/limit-ranger`` annotation; the pod's ``status.qosClass`` is computed again from
  the result (kubelab's registry sets it before admission, Kubernetes' after).
* Validating, before ResourceQuota: ``min``, ``max`` and ``maxLimitRequestRatio`` of ``Container``
  and ``Pod`` items on pod create, of ``PersistentVolumeClaim`` items on claim create and update;
  a violation is a 403 naming the object, ``pods "x" is forbidden: maximum memory usage per
  Container is 1Gi, but limit is 2Gi`` (several: ``[a, b]``).

Pods are admitted on create only: Kubernetes neither mutates nor checks pod updates here (their
containers' resources cannot change). The ``pods/binding`` write, which the registry admits with
no old object, is recognised by the uid it already carries and passed through. LimitRanges are
read from the store, so one created a moment ago applies to the next pod. The rules themselves
live in :mod:`machinery.quota.limitranges`.
"""

from __future__ import annotations

from typing import Any

import orjson

from apiserver.admission_lookup import AdmissionLookup
from apiserver.registry import MutatingAdmission
from apiserver.strategy import qos_class
from machinery.errors import ForbiddenError
from machinery.quota.limitranges import aggregate, apply_container_defaults, claim_violations, pod_violations

Obj = dict[str, Any]


def is_create(obj: Obj, old: Obj | None) -> bool:
    """A create (the registry pops the uid before admission), not a ``pods/binding`` write."""
    return old is None and not (obj.get("metadata") or {}).get("uid")


class LimitRanger:
    """The plugin's mutating and validating steps for pods and claims."""

    def __init__(self, ranges: AdmissionLookup) -> None:
        self.ranges = ranges

    async def limit_ranges(self, namespace: str) -> list[Obj]:
        """Every LimitRange of ``namespace`` (the watch cache, else a remembered store list)."""
        return [orjson.loads(kv.value) for kv in await self.ranges.current(namespace)]

    def with_defaults(self, inner: MutatingAdmission | None) -> MutatingAdmission:
        """Pod admission: the defaults first, then ``inner`` (the pod's other built-in steps)."""
        async def admit(pod: Obj, old: Obj | None, dry_run: bool) -> None:
            if is_create(pod, old):
                await self.default_pod(pod)
            if inner is not None:
                await inner(pod, old, dry_run)
        return admit

    async def default_pod(self, pod: Obj) -> None:
        namespace = str((pod.get("metadata") or {}).get("namespace") or "")
        ranges = await self.limit_ranges(namespace) if namespace else []
        if ranges and apply_container_defaults(pod, ranges):
            qos = qos_class(pod)
            if qos and isinstance(pod.get("status"), dict):
                pod["status"]["qosClass"] = qos

    async def validate_pod(self, pod: Obj, old: Obj | None, dry_run: bool) -> None:
        if old is not None:  # validating admission never sees the binding write
            return
        meta = pod.get("metadata") or {}
        ranges = await self.limit_ranges(str(meta.get("namespace") or ""))
        errors = pod_violations(pod, ranges) if ranges else []
        if errors:
            raise _forbidden("pods", "", str(meta.get("name") or meta.get("generateName") or ""), errors)

    async def validate_claim(self, pvc: Obj, old: Obj | None, dry_run: bool) -> None:
        meta = pvc.get("metadata") or {}
        ranges = await self.limit_ranges(str(meta.get("namespace") or ""))
        errors = claim_violations(pvc, ranges) if ranges else []
        if errors:
            raise _forbidden("persistentvolumeclaims", "", str(meta.get("name") or ""), errors)


def _forbidden(plural: str, group: str, name: str, errors: list[str]) -> ForbiddenError:
    return ForbiddenError(f'{plural} "{name}" is forbidden: {aggregate(errors)}', name=name, group=group,
                          kind=plural)
