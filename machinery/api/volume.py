"""core/v1 volume types: Volume and its sources (configMap, secret, emptyDir, hostPath, projected, ...).

Building blocks of :mod:`machinery.api.pod`. Rarely used cloud/in-tree sources are accepted as
opaque objects so real manifests decode; the common ones are fully typed.
"""

from typing import Any, ClassVar

from machinery.api.base import Int32, Int64, K8sModel, Quantity
from machinery.api.container import ObjectFieldSelector, ResourceFieldSelector


class LocalObjectReference(K8sModel):
    """Names an object in the same namespace."""

    name: str | None = None


class KeyToPath(K8sModel):
    """Projects one key of a ConfigMap or Secret to a file path."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key", "path")
    key: str | None = None
    path: str | None = None
    mode: Int32 | None = None


class HostPathVolumeSource(K8sModel):
    """A file or directory of the node mounted into the pod."""

    k8s_required: ClassVar[tuple[str, ...]] = ("path",)
    path: str | None = None
    type: str | None = None


class EmptyDirVolumeSource(K8sModel):
    """A scratch directory that lives as long as the pod."""

    medium: str | None = None
    sizeLimit: Quantity | None = None


class SecretVolumeSource(K8sModel):
    """The keys of a Secret as files."""

    secretName: str | None = None
    items: list[KeyToPath] | None = None
    defaultMode: Int32 | None = None
    optional: bool | None = None


class ConfigMapVolumeSource(K8sModel):
    """The keys of a ConfigMap as files."""

    name: str | None = None
    items: list[KeyToPath] | None = None
    defaultMode: Int32 | None = None
    optional: bool | None = None


class PersistentVolumeClaimVolumeSource(K8sModel):
    """A PersistentVolumeClaim in the pod's namespace."""

    claimName: str | None = None
    readOnly: bool | None = None


class DownwardAPIVolumeFile(K8sModel):
    """One file holding a pod field or a container resource value."""

    k8s_required: ClassVar[tuple[str, ...]] = ("path",)
    path: str | None = None
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    mode: Int32 | None = None


class DownwardAPIVolumeSource(K8sModel):
    """Pod metadata and resource values as files."""

    items: list[DownwardAPIVolumeFile] | None = None
    defaultMode: Int32 | None = None


class DownwardAPIProjection(K8sModel):
    """Downward API files inside a projected volume."""

    items: list[DownwardAPIVolumeFile] | None = None


class SecretProjection(K8sModel):
    """Secret keys inside a projected volume."""

    name: str | None = None
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class ConfigMapProjection(K8sModel):
    """ConfigMap keys inside a projected volume."""

    name: str | None = None
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class ServiceAccountTokenProjection(K8sModel):
    """A bound service-account token file."""

    audience: str | None = None
    expirationSeconds: Int64 | None = None
    path: str | None = None


class VolumeProjection(K8sModel):
    """One source of a projected volume."""

    secret: SecretProjection | None = None
    configMap: ConfigMapProjection | None = None
    downwardAPI: DownwardAPIProjection | None = None
    serviceAccountToken: ServiceAccountTokenProjection | None = None
    clusterTrustBundle: dict[str, Any] | None = None
    podCertificate: dict[str, Any] | None = None


class ProjectedVolumeSource(K8sModel):
    """Several sources merged into one directory."""

    sources: list[VolumeProjection] | None = None
    defaultMode: Int32 | None = None


class NFSVolumeSource(K8sModel):
    """An NFS export."""

    server: str | None = None
    path: str | None = None
    readOnly: bool | None = None


class CSIVolumeSource(K8sModel):
    """An ephemeral volume provided by a CSI driver."""

    driver: str | None = None
    readOnly: bool | None = None
    fsType: str | None = None
    volumeAttributes: dict[str, str] | None = None
    nodePublishSecretRef: LocalObjectReference | None = None


class ImageVolumeSource(K8sModel):
    """An OCI image mounted as a volume."""

    reference: str | None = None
    pullPolicy: str | None = None


_Opaque = dict[str, Any] | None


class Volume(K8sModel):
    """A named volume of the pod; exactly one source is set."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None
    hostPath: HostPathVolumeSource | None = None
    emptyDir: EmptyDirVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    configMap: ConfigMapVolumeSource | None = None
    persistentVolumeClaim: PersistentVolumeClaimVolumeSource | None = None
    downwardAPI: DownwardAPIVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    nfs: NFSVolumeSource | None = None
    csi: CSIVolumeSource | None = None
    image: ImageVolumeSource | None = None
    ephemeral: _Opaque = None
    gcePersistentDisk: _Opaque = None
    awsElasticBlockStore: _Opaque = None
    gitRepo: _Opaque = None
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


VOLUME_SOURCES: tuple[str, ...] = tuple(n for n in Volume.model_fields if n != "name")
