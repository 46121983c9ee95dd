"""What a real node adds to the pod lifecycle, as one bundle: :class:`PodFeatures`.

``kubelet.server`` builds it for a Docker node (:meth:`PodFeatures.for_client`) and hands it to
``kubelet.sync.PodSyncer`` and ``kubelet.containerstart.ContainerStarter``; hollow nodes pass none,
so their pods get no volumes, env resolution, DNS, probes or hooks. :class:`EventSink` is where
both send pod events (``machinery.client.events.EventRecorder`` has its shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelet.envvars import ApiObjectSource, NodeAllocatable, ObjectSource
from kubelet.prober import ProbeManager
from kubelet.projected import ApiTokenSource, TokenManager
from kubelet.runtime.interface import ContainerRuntime
from kubelet.volumes import VolumeManager
from machinery.client.rest import ApiClient

__all__ = ["DnsConfig", "EventSink", "PodFeatures"]


class EventSink(Protocol):
    """Where pod events go (``machinery.client.events.EventRecorder`` has this shape)."""

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ...


DnsConfig = Callable[[dict[str, Any]], tuple[list[str], list[str], list[str]]]
"""pod → (nameservers, searches, options) for its sandbox."""


@dataclass
class PodFeatures:
    """What a real node adds to the pod lifecycle (all optional pieces of one bundle)."""

    volumes: VolumeManager
    probes: ProbeManager
    source: ObjectSource
    allocatable: NodeAllocatable = field(default_factory=NodeAllocatable)
    dns: DnsConfig | None = None
    config_retry: float = 2.0
    """Seconds before a pod whose volumes or env could not be built is synced again."""
    volume_refresh: float = 10.0
    """Pods with configMap/secret/downwardAPI volumes are re-synced this often (file updates)."""

    @classmethod
    def for_client(cls, client: ApiClient, runtime: ContainerRuntime, root: Any, *,
                   on_change: Callable[[str], None], events: EventSink | None = None,
                   probe_time_scale: float = 1.0, **kwargs: Any) -> PodFeatures:
        """The usual bundle: ConfigMaps/Secrets read from the API, volumes under ``root``."""
        source = ApiObjectSource(client)
        return cls(volumes=VolumeManager(root, source, TokenManager(ApiTokenSource(client))), source=source,
                   probes=ProbeManager(runtime, on_change=on_change, events=events, time_scale=probe_time_scale),
                   **kwargs)
