"""Registries of HorizontalPodAutoscalers: Kubernetes' HPA strategy, and autoscaling/v1 over v2 storage.

``apiserver.context`` builds one per served version (:func:`registry_class`). Both keep the rules
of Kubernetes' ``horizontalpodautoscaler`` strategy: a new HPA starts with an empty status
(``desiredReplicas: 0``), an update of the main resource keeps the stored status, ``/status``
changes only the status.

:class:`HorizontalPodAutoscalerV1Registry` serves autoscaling/v1 from the same keys: objects are
stored at autoscaling/v2 (the storage version) and converted on every read, list and watch
(``presents``); a v1 write is decoded and defaulted at v1, given v2's defaults through its v2
form (a v1 HPA without a CPU target reads back with 80 %), validated, and stored at v2
(:mod:`machinery.api.autoscaling_conversion`).
"""

from __future__ import annotations

import copy
from typing import Any

from apiserver.codec import encode
from apiserver.registry import Registry
from apiserver.storage.interface import KeyValue
from apiserver.write_options import WriteOptions
from machinery.api import defaults
from machinery.api.autoscaling_conversion import V1, V2, to_v1, to_v2
from machinery.resources import ResourceInfo

Obj = dict[str, Any]
KIND = "HorizontalPodAutoscaler"


class HorizontalPodAutoscalerRegistry(Registry):
    """autoscaling/v2 HorizontalPodAutoscalers (the storage version)."""

    def _empty_status(self) -> Obj:
        return {"desiredReplicas": 0}

    def _prepare_for_create(self, obj: Obj) -> None:
        super()._prepare_for_create(obj)
        obj["status"] = self._empty_status()

    def _prepare_for_update(self, new: Obj, old: Obj) -> None:
        super()._prepare_for_update(new, old)
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)


class HorizontalPodAutoscalerV1Registry(HorizontalPodAutoscalerRegistry):
    """autoscaling/v1 HorizontalPodAutoscalers, stored at autoscaling/v2."""

    presents = True

    def _empty_status(self) -> Obj:
        return {"currentReplicas": 0, "desiredReplicas": 0}

    def present(self, obj: Obj) -> Obj:
        return to_v1(obj) if obj.get("apiVersion") == V2 else obj

    def _decode(self, kv: KeyValue) -> Obj:
        return self.present(super()._decode(kv))

    def _encode(self, obj: Obj) -> bytes:
        return encode(to_v2(obj) if obj.get("apiVersion") == V1 else obj)

    async def _admit(self, obj: Obj, opts: WriteOptions, *, old: Obj | None) -> tuple[Obj, list[str]]:
        prepared, warnings = await super()._admit(obj, opts, old=old)
        stored = to_v2(prepared)
        defaults.apply(KIND, stored)
        return to_v1(stored), warnings


def registry_class(resource: ResourceInfo) -> type[Registry]:
    """The registry class serving ``resource`` (plain :class:`Registry` for other kinds)."""
    if resource.group == "autoscaling" and resource.kind == KIND:
        return HorizontalPodAutoscalerV1Registry if resource.version == "v1" else HorizontalPodAutoscalerRegistry
    return Registry
