"""What the HPA controller reads from the API besides HPAs: pod metrics and the target's scale.

:class:`ResourceMetricsClient` is Kubernetes' ``resourceMetricsClient`` (podautoscaler/metrics):
it lists ``metrics.k8s.io/v1beta1`` PodMetrics of a namespace by label selector and sums each
pod's containers (or one container) in milli-units. :class:`ScaleTargets` resolves a
``scaleTargetRef`` (apiVersion + kind) to the resource serving its ``/scale`` subresource: built-in
kinds from :mod:`machinery.resources`, others (custom resources with a scale subresource) from the
apiserver's discovery document, remembered per group version.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from controllers.hpa_replicas import PodMetric, PodMetrics, ReplicaCalculationError
from machinery import errors
from machinery.client import ApiClient
from machinery.meta import parse_rfc3339
from machinery.quantity import parse_quantity
from machinery.resources import PODMETRICS, ResourceInfo, lookup_kind

Obj = dict[str, Any]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_window(text: str) -> timedelta:
    """A Go duration as metrics-server writes windows (``15s``, ``1m0s``, ``10.5s``)."""
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text or ""))
    return timedelta(seconds=seconds)


class ResourceMetricsClient:
    """Pod resource usage from the resource metrics API."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def pod_metrics(self, namespace: str, selector: str, resource: str,
                          container: str = "") -> tuple[PodMetrics, datetime | None]:
        """Pod name → usage (milli-units) of ``resource``; and the newest sample's time."""
        try:
            listed = await self.client.list(PODMETRICS, namespace=namespace, label_selector=selector)
        except errors.ApiError as err:
            raise ReplicaCalculationError(f"unable to get metrics for resource {resource}: unable to fetch "
                                          f"metrics from resource metrics API: {err}") from err
        found: PodMetrics = {}
        newest: datetime | None = None
        for item in listed.get("items") or []:
            total, complete = 0, True
            for c in item.get("containers") or []:
                if container and c.get("name") != container:
                    continue
                value = (c.get("usage") or {}).get(resource)
                if value is None:
                    complete = False
                    break
                total += parse_quantity(str(value)).milli_value()
            if container and not any(c.get("name") == container for c in item.get("containers") or []):
                complete = False
            if not complete:
                continue
            at = parse_rfc3339(str(item.get("timestamp"))) if item.get("timestamp") else None
            if at is None:
                continue
            name = str((item.get("metadata") or {}).get("name", ""))
            found[name] = PodMetric(total, at, parse_window(str(item.get("window") or "")))
            newest = at if newest is None or at > newest else newest
        if not found:
            raise ReplicaCalculationError(f"unable to get metrics for resource {resource}: no metrics returned "
                                          "from resource metrics API")
        return found, newest


class ScaleTargets:
    """Resolves scale target references to served resources (see the module docstring)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._discovered: dict[str, list[Obj]] = {}

    async def resource_for(self, ref: Obj) -> ResourceInfo:
        api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        known = lookup_kind(api_version, kind)
        if known is not None and known.subresource("scale") is not None:
            return known
        group, _, version = api_version.rpartition("/")
        for entry in await self._resources(api_version):
            name = str(entry.get("name", ""))
            if entry.get("kind") == kind and "/" not in name and any(
                    e.get("name") == f"{name}/scale" for e in self._discovered[api_version]):
                return ResourceInfo(group, version or api_version, kind, name, str(entry.get("singularName", "")),
                                    bool(entry.get("namespaced")))
        raise errors.NotFoundError(f'no matches for kind "{kind}" in group "{group}" with a scale subresource')

    async def _resources(self, api_version: str) -> list[Obj]:
        if api_version not in self._discovered:
            path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            document = await self.client.request("GET", path)
            self._discovered[api_version] = list((document or {}).get("resources") or [])
        return self._discovered[api_version]
