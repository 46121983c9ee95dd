"""The built-in plugins and :func:`default_registry` (name -> factory), used by :mod:`scheduler.profile`."""

from __future__ import annotations

from scheduler.framework import Registry
from scheduler.plugins.basic import NodeName, NodeUnschedulable, TaintToleration
from scheduler.plugins.interpod import InterPodAffinity
from scheduler.plugins.node_affinity import NodeAffinity
from scheduler.plugins.resources import BalancedAllocation, ImageLocality, LeastAllocated, NodeResourcesFit
from scheduler.plugins.spreading import PodTopologySpread, SelectorSpread
from scheduler.plugins.volume_binding import VolumeBinding

__all__ = ["default_registry"]


def default_registry() -> Registry:
    """Every built-in plugin under its Kubernetes name."""
    registry = Registry()
    registry.register("NodeName", lambda args, handle: NodeName())
    registry.register("NodeUnschedulable", lambda args, handle: NodeUnschedulable())
    registry.register("TaintToleration", lambda args, handle: TaintToleration())
    registry.register("NodeAffinity", lambda args, handle: NodeAffinity())
    registry.register("NodeResourcesFit", lambda args, handle: NodeResourcesFit())
    registry.register("PodTopologySpread", lambda args, handle: PodTopologySpread(handle.cache))
    registry.register("InterPodAffinity", lambda args, handle: InterPodAffinity(handle.cache))
    registry.register("NodeResourcesLeastAllocated", lambda args, handle: LeastAllocated())
    registry.register("NodeResourcesBalancedAllocation", lambda args, handle: BalancedAllocation())
    registry.register("ImageLocality", lambda args, handle: ImageLocality(handle.cache))
    registry.register("SelectorSpread", lambda args, handle: SelectorSpread())
    registry.register("VolumeBinding", lambda args, handle: VolumeBinding())
    return registry
