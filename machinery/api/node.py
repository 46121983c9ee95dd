"""core/v1 Node: spec (podCIDRs, taints, unschedulable) and status (capacity, conditions, nodeInfo, ...).

Registered as a kind in ``machinery.api``; written by the kubelet, read by the scheduler.
"""

from typing import Any, ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, K8sModel, Quantity, Time, merge_key
from machinery.api.meta import ObjectMeta


class Taint(K8sModel):
    """Repels pods that do not tolerate it (NoSchedule, PreferNoSchedule, NoExecute)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key", "effect")
    key: str | None = None
    value: str | None = None
    effect: str | None = None
    timeAdded: Time | None = None


class NodeSpec(K8sModel):
    """The desired state of a node: pod CIDRs, taints, schedulability."""

    podCIDR: str | None = None
    podCIDRs: list[str] | None = Field(None, json_schema_extra=merge_key(None))
    providerID: str | None = None
    unschedulable: bool | None = None
    taints: list[Taint] | None = None
    configSource: dict[str, Any] | None = None
    externalID: str | None = None


class NodeCondition(K8sModel):
    """A condition of a node (Ready, MemoryPressure, DiskPressure, ...)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastHeartbeatTime: Time | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class NodeAddress(K8sModel):
    """An address of the node (InternalIP, ExternalIP, Hostname)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "address")
    type: str | None = None
    address: str | None = None


class DaemonEndpoint(K8sModel):
    """A port a node daemon listens on."""

    Port: Int32 | None = None


class NodeDaemonEndpoints(K8sModel):
    """Ports of the daemons running on the node."""

    kubeletEndpoint: DaemonEndpoint | None = None


class NodeSwapStatus(K8sModel):
    """Swap memory of the node."""

    capacity: Int64 | None = None


class NodeSystemInfo(K8sModel):
    """Identity and software versions of the node."""

    machineID: str | None = None
    systemUUID: str | None = None
    bootID: str | None = None
    kernelVersion: str | None = None
    osImage: str | None = None
    containerRuntimeVersion: str | None = None
    kubeletVersion: str | None = None
    kubeProxyVersion: str | None = None
    operatingSystem: str | None = None
    architecture: str | None = None
    swap: NodeSwapStatus | None = None


class ContainerImage(K8sModel):
    """An image present on the node."""

    names: list[str] | None = None
    sizeBytes: Int64 | None = None


class AttachedVolume(K8sModel):
    """A volume attached to the node."""

    name: str | None = None
    devicePath: str | None = None


class NodeRuntimeHandlerFeatures(K8sModel):
    """Features a runtime handler supports."""

    recursiveReadOnlyMounts: bool | None = None
    userNamespaces: bool | None = None


class NodeRuntimeHandler(K8sModel):
    """A runtime handler of the node's container runtime."""

    name: str | None = None
    features: NodeRuntimeHandlerFeatures | None = None


class NodeFeatures(K8sModel):
    """Features the node implements."""

    supplementalGroupsPolicy: bool | None = None


class NodeStatus(K8sModel):
    """The observed state of a node: resources, conditions, addresses, software, images."""

    capacity: dict[str, Quantity] | None = None
    allocatable: dict[str, Quantity] | None = None
    phase: str | None = None
    conditions: list[NodeCondition] | None = Field(None, json_schema_extra=merge_key("type"))
    addresses: list[NodeAddress] | None = Field(None, json_schema_extra=merge_key("type"))
    daemonEndpoints: NodeDaemonEndpoints | None = None
    nodeInfo: NodeSystemInfo | None = None
    images: list[ContainerImage] | None = None
    volumesInUse: list[str] | None = None
    volumesAttached: list[AttachedVolume] | None = None
    config: dict[str, Any] | None = None
    runtimeHandlers: list[NodeRuntimeHandler] | None = None
    features: NodeFeatures | None = None
    declaredFeatures: list[str] | None = None


class Node(K8sModel):
    """A machine (here: a kubelet on Docker) that runs pods."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Node")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: NodeSpec | None = None
    status: NodeStatus | None = None
