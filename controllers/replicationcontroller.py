"""The ReplicationController controller: the ReplicaSet controller over core/v1
ReplicationControllers, whose selector is a plain label map (equality only).

Started by ``controllers.manager``. Everything but the kind, the resource and the selector's
shape is :class:`controllers.replicaset.ReplicaSetController` (as Kubernetes runs its ReplicaSet
controller code for ReplicationControllers through a conversion adapter).
"""

from __future__ import annotations

from typing import Any

from controllers.replicaset import ReplicaSetController
from machinery import errors
from machinery.resources import REPLICATIONCONTROLLERS, ResourceInfo
from machinery.selectors import LabelSelector, from_label_selector

Obj = dict[str, Any]


class ReplicationControllerController(ReplicaSetController):
    """Keeps ``spec.replicas`` pods for every ReplicationController."""

    name = "replicationcontroller"
    resource: ResourceInfo = REPLICATIONCONTROLLERS
    kind = "ReplicationController"
    component = "replication-controller"

    @staticmethod
    def selector_of(rs: Obj) -> LabelSelector | None:
        """``spec.selector`` is a label map; an empty one selects nothing."""
        labels = (rs.get("spec") or {}).get("selector") or {}
        if not labels:
            return None
        try:
            return from_label_selector({"matchLabels": dict(labels)})
        except errors.ApiError:
            return None
