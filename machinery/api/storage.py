"""core/v1 PersistentVolume and PersistentVolumeClaim, and storage.k8s.io/v1 StorageClass.

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.core.v1`` and
``io.k8s.api.storage.v1``. The models check and clean input; the PV binder, the local-path
provisioner, the volume-binding scheduler plugin and the kubelet read the objects as plain dicts.
Field rules live in :mod:`machinery.api.validation_storage`, defaults in
:mod:`machinery.api.defaults_storage`. Rarely used in-tree volume sources are accepted as opaque
objects so real manifests decode; the ones kubelab can serve (``hostPath``, ``local``) are typed.
"""

from typing import Any, ClassVar

from machinery.api.base import K8sModel, Quantity, Time
from machinery.api.meta import LabelSelector, ObjectMeta
from machinery.api.networking import TypedLocalObjectReference
from machinery.api.pod import NodeSelector, ObjectReference
from machinery.api.volume import HostPathVolumeSource, NFSVolumeSource

_Opaque = dict[str, Any] | None


class LocalVolumeSource(K8sModel):
    """A directory or disk of one node (the PV must carry node affinity to that node)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("path",)
    path: str | None = None
    fsType: str | None = None


class VolumeNodeAffinity(K8sModel):
    """The nodes a PersistentVolume can be reached from."""

    required: NodeSelector | None = None


class PersistentVolumeSpec(K8sModel):
    """What a PersistentVolume is (capacity, access modes, class) and where its data lives."""

    capacity: dict[str, Quantity] | None = None
    accessModes: list[str] | None = None
    claimRef: ObjectReference | None = None
    persistentVolumeReclaimPolicy: str | None = None
    storageClassName: str | None = None
    mountOptions: list[str] | None = None
    volumeMode: str | None = None
    nodeAffinity: VolumeNodeAffinity | None = None
    volumeAttributesClassName: str | None = None
    hostPath: HostPathVolumeSource | None = None
    local: LocalVolumeSource | None = None
    nfs: NFSVolumeSource | None = None
    csi: _Opaque = None
    gcePersistentDisk: _Opaque = None
    awsElasticBlockStore: _Opaque = None
    iscsi: _Opaque = None
    glusterfs: _Opaque = None
    rbd: _Opaque = None
    flexVolume: _Opaque = None
    cinder: _Opaque = None
    cephfs: _Opaque = None
    flocker: _Opaque = None
    fc: _Opaque = None
    azureFile: _Opaque = None
    azureDisk: _Opaque = None
    vsphereVolume: _Opaque = None
    quobyte: _Opaque = None
    photonPersistentDisk: _Opaque = None
    portworxVolume: _Opaque = None
    scaleIO: _Opaque = None
    storageos: _Opaque = None


PV_SOURCES: tuple[str, ...] = (
    "hostPath", "local", "nfs", "csi", "gcePersistentDisk", "awsElasticBlockStore", "iscsi", "glusterfs",
    "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "azureDisk", "vsphereVolume",
    "quobyte", "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos",
)


class PersistentVolumeStatus(K8sModel):
    """Where a PersistentVolume is in its life (Pending, Available, Bound, Released, Failed)."""

    phase: str | None = None
    message: str | None = None
    reason: str | None = None
    lastPhaseTransitionTime: Time | None = None


class PersistentVolume(K8sModel):
    """A piece of storage in the cluster, provisioned by an administrator or a provisioner."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "PersistentVolume")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: PersistentVolumeSpec | None = None
    status: PersistentVolumeStatus | None = None


class TypedObjectReference(K8sModel):
    """A typed object, possibly in another namespace (a claim's data source)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("kind", "name")
    apiGroup: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class VolumeResourceRequirements(K8sModel):
    """The storage a claim requests (``requests.storage``) and may be limited to."""

    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class PersistentVolumeClaimSpec(K8sModel):
    """The storage a claim asks for: size, access modes, class, and optionally a given volume."""

    accessModes: list[str] | None = None
    selector: LabelSelector | None = None
    resources: VolumeResourceRequirements | None = None
    volumeName: str | None = None
    storageClassName: str | None = None
    volumeMode: str | None = None
    dataSource: TypedLocalObjectReference | None = None
    dataSourceRef: TypedObjectReference | None = None
    volumeAttributesClassName: str | None = None


class PersistentVolumeClaimCondition(K8sModel):
    """A condition of a claim (resizing)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    status: str | None = None
    lastProbeTime: Time | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class PersistentVolumeClaimStatus(K8sModel):
    """The phase of a claim and, once bound, what it got."""

    phase: str | None = None
    accessModes: list[str] | None = None
    capacity: dict[str, Quantity] | None = None
    conditions: list[PersistentVolumeClaimCondition] | None = None
    allocatedResources: dict[str, Quantity] | None = None
    allocatedResourceStatuses: dict[str, str] | None = None
    currentVolumeAttributesClassName: str | None = None
    modifyVolumeStatus: _Opaque = None


class PersistentVolumeClaim(K8sModel):
    """A user's request for storage, bound to one PersistentVolume."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "PersistentVolumeClaim")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: PersistentVolumeClaimSpec | None = None
    status: PersistentVolumeClaimStatus | None = None


class StorageModel(K8sModel):
    """Base of the storage.k8s.io/v1 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.storage.v1"


class TopologySelectorLabelRequirement(K8sModel):
    """A topology label and the values it may have."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key", "values")
    key: str | None = None
    values: list[str] | None = None


class TopologySelectorTerm(K8sModel):
    """Topology requirements that must all hold."""

    matchLabelExpressions: list[TopologySelectorLabelRequirement] | None = None


class StorageClass(StorageModel):
    """A class of storage: who provisions it, with which parameters, reclaim policy and binding mode."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("storage.k8s.io", "v1", "StorageClass")
    k8s_required: ClassVar[tuple[str, ...]] = ("provisioner",)
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    provisioner: str | None = None
    parameters: dict[str, str] | None = None
    reclaimPolicy: str | None = None
    mountOptions: list[str] | None = None
    allowVolumeExpansion: bool | None = None
    volumeBindingMode: str | None = None
    allowedTopologies: list[TopologySelectorTerm] | None = None
