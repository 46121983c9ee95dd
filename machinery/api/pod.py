"""core/v1 Pod: PodSpec (scheduling, affinity, tolerations, DNS, security), PodStatus, templates, Binding.

Used by :mod:`machinery.api.apps` (pod templates) and registered as kinds in ``machinery.api``.
"""

from typing import Any, ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, K8sModel, Quantity, Time, merge_key
from machinery.api.container import (
    AppArmorProfile,
    Container,
    EphemeralContainer,
    ResourceRequirements,
    SeccompProfile,
    SELinuxOptions,
    WindowsSecurityContextOptions,
)
from machinery.api.meta import LabelSelector, ObjectMeta
from machinery.api.volume import LocalObjectReference, Volume


class NodeSelectorRequirement(K8sModel):
    """A requirement on a node label or field: key, operator (In, NotIn, Exists, DoesNotExist, Gt, Lt)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key", "operator")
    key: str | None = None
    operator: str | None = None
    values: list[str] | None = None


class NodeSelectorTerm(K8sModel):
    """Requirements that must all hold (terms of a NodeSelector are ORed)."""

    matchExpressions: list[NodeSelectorRequirement] | None = None
    matchFields: list[NodeSelectorRequirement] | None = None


class NodeSelector(K8sModel):
    """A union of node selector terms."""

    k8s_required: ClassVar[tuple[str, ...]] = ("nodeSelectorTerms",)
    nodeSelectorTerms: list[NodeSelectorTerm] | None = None


class PreferredSchedulingTerm(K8sModel):
    """A weighted node preference."""

    k8s_required: ClassVar[tuple[str, ...]] = ("weight", "preference")
    weight: Int32 | None = None
    preference: NodeSelectorTerm | None = None


class NodeAffinity(K8sModel):
    """Node rules: hard requirements and weighted preferences."""

    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[PreferredSchedulingTerm] | None = None


class PodAffinityTerm(K8sModel):
    """Pods matching labelSelector in namespaces, co-located by topologyKey."""

    k8s_required: ClassVar[tuple[str, ...]] = ("topologyKey",)
    labelSelector: LabelSelector | None = None
    namespaces: list[str] | None = None
    topologyKey: str | None = None
    namespaceSelector: LabelSelector | None = None
    matchLabelKeys: list[str] | None = None
    mismatchLabelKeys: list[str] | None = None


class WeightedPodAffinityTerm(K8sModel):
    """A weighted pod (anti-)affinity preference."""

    k8s_required: ClassVar[tuple[str, ...]] = ("weight", "podAffinityTerm")
    weight: Int32 | None = None
    podAffinityTerm: PodAffinityTerm | None = None


class PodAffinity(K8sModel):
    """Rules to place the pod near other pods."""

    requiredDuringSchedulingIgnoredDuringExecution: list[PodAffinityTerm] | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedPodAffinityTerm] | None = None


class PodAntiAffinity(K8sModel):
    """Rules to keep the pod away from other pods."""

    requiredDuringSchedulingIgnoredDuringExecution: list[PodAffinityTerm] | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedPodAffinityTerm] | None = None


class Affinity(K8sModel):
    """Scheduling constraints: node affinity, pod affinity and pod anti-affinity."""

    nodeAffinity: NodeAffinity | None = None
    podAffinity: PodAffinity | None = None
    podAntiAffinity: PodAntiAffinity | None = None


class Toleration(K8sModel):
    """Lets the pod schedule onto (or stay on) nodes with a matching taint."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    tolerationSeconds: Int64 | None = None


class TopologySpreadConstraint(K8sModel):
    """How to spread matching pods across topology domains."""

    k8s_required: ClassVar[tuple[str, ...]] = ("maxSkew", "topologyKey", "whenUnsatisfiable")
    maxSkew: Int32 | None = None
    topologyKey: str | None = None
    whenUnsatisfiable: str | None = None
    labelSelector: LabelSelector | None = None
    minDomains: Int32 | None = None
    nodeAffinityPolicy: str | None = None
    nodeTaintsPolicy: str | None = None
    matchLabelKeys: list[str] | None = None


class HostAlias(K8sModel):
    """An extra /etc/hosts entry."""

    k8s_required: ClassVar[tuple[str, ...]] = ("ip",)
    ip: str | None = None
    hostnames: list[str] | None = None


class PodDNSConfigOption(K8sModel):
    """A resolver option (ndots, timeout, ...)."""

    name: str | None = None
    value: str | None = None


class PodDNSConfig(K8sModel):
    """Extra DNS settings merged into the pod's resolv.conf."""

    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None


class Sysctl(K8sModel):
    """A namespaced kernel parameter set for the pod."""

    name: str | None = None
    value: str | None = None


class PodSecurityContext(K8sModel):
    """Pod-level security settings applied to every container."""

    seLinuxOptions: SELinuxOptions | None = None
    windowsOptions: WindowsSecurityContextOptions | None = None
    runAsUser: Int64 | None = None
    runAsGroup: Int64 | None = None
    runAsNonRoot: bool | None = None
    supplementalGroups: list[Int64] | None = None
    supplementalGroupsPolicy: str | None = None
    fsGroup: Int64 | None = None
    sysctls: list[Sysctl] | None = None
    fsGroupChangePolicy: str | None = None
    seccompProfile: SeccompProfile | None = None
    appArmorProfile: AppArmorProfile | None = None
    seLinuxChangePolicy: str | None = None


class PodReadinessGate(K8sModel):
    """An extra condition that must be True for the pod to be ready."""

    conditionType: str | None = None


class PodOS(K8sModel):
    """The operating system the pod's containers need."""

    name: str | None = None


class PodSchedulingGate(K8sModel):
    """Holds the pod back from scheduling while present."""

    name: str | None = None


class PodResourceClaim(K8sModel):
    """A dynamic resource claim the pod uses."""

    name: str | None = None
    resourceClaimName: str | None = None
    resourceClaimTemplateName: str | None = None


class PodSpec(K8sModel):
    """The desired state of a pod: containers, volumes, scheduling and runtime settings."""

    k8s_required: ClassVar[tuple[str, ...]] = ("containers",)
    volumes: list[Volume] | None = Field(
        None, json_schema_extra=merge_key("name", "merge,retainKeys"))
    initContainers: list[Container] | None = Field(None, json_schema_extra=merge_key("name"))
    containers: list[Container] | None = Field(None, json_schema_extra=merge_key("name"))
    ephemeralContainers: list[EphemeralContainer] | None = Field(None, json_schema_extra=merge_key("name"))
    restartPolicy: str | None = None
    terminationGracePeriodSeconds: Int64 | None = None
    activeDeadlineSeconds: Int64 | None = None
    dnsPolicy: str | None = None
    nodeSelector: dict[str, str] | None = None
    serviceAccountName: str | None = None
    serviceAccount: str | None = None
    automountServiceAccountToken: bool | None = None
    nodeName: str | None = None
    hostNetwork: bool | None = None
    hostPID: bool | None = None
    hostIPC: bool | None = None
    shareProcessNamespace: bool | None = None
    securityContext: PodSecurityContext | None = None
    imagePullSecrets: list[LocalObjectReference] | None = Field(None, json_schema_extra=merge_key("name"))
    hostname: str | None = None
    subdomain: str | None = None
    affinity: Affinity | None = None
    schedulerName: str | None = None
    tolerations: list[Toleration] | None = None
    hostAliases: list[HostAlias] | None = Field(None, json_schema_extra=merge_key("ip"))
    priorityClassName: str | None = None
    priority: Int32 | None = None
    dnsConfig: PodDNSConfig | None = None
    readinessGates: list[PodReadinessGate] | None = None
    runtimeClassName: str | None = None
    enableServiceLinks: bool | None = None
    preemptionPolicy: str | None = None
    overhead: dict[str, Quantity] | None = None
    topologySpreadConstraints: list[TopologySpreadConstraint] | None = Field(
        None, json_schema_extra=merge_key("topologyKey"))
    setHostnameAsFQDN: bool | None = None
    os: PodOS | None = None
    hostUsers: bool | None = None
    schedulingGates: list[PodSchedulingGate] | None = Field(None, json_schema_extra=merge_key("name"))
    resourceClaims: list[PodResourceClaim] | None = Field(
        None, json_schema_extra=merge_key("name", "merge,retainKeys"))
    resources: ResourceRequirements | None = None
    hostnameOverride: str | None = None


class PodCondition(K8sModel):
    """A condition of the pod (PodScheduled, Initialized, ContainersReady, Ready)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("type", "status")
    type: str | None = None
    observedGeneration: Int64 | None = None
    status: str | None = None
    lastProbeTime: Time | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class PodIP(K8sModel):
    """One IP address of the pod."""

    ip: str | None = None


class HostIP(K8sModel):
    """One IP address of the pod's node."""

    ip: str | None = None


class ContainerStateWaiting(K8sModel):
    """The container has not started yet (ContainerCreating, ImagePullBackOff, ...)."""

    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(K8sModel):
    """The container is running."""

    startedAt: Time | None = None


class ContainerStateTerminated(K8sModel):
    """The container has exited."""

    k8s_required: ClassVar[tuple[str, ...]] = ("exitCode",)
    exitCode: Int32 | None = None
    signal: Int32 | None = None
    reason: str | None = None
    message: str | None = None
    startedAt: Time | None = None
    finishedAt: Time | None = None
    containerID: str | None = None


class ContainerState(K8sModel):
    """Exactly one of waiting, running or terminated."""

    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class VolumeMountStatus(K8sModel):
    """How a volume mount was actually applied."""

    name: str | None = None
    mountPath: str | None = None
    readOnly: bool | None = None
    recursiveReadOnly: str | None = None


class ContainerStatus(K8sModel):
    """The observed state of one container."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "ready", "restartCount", "image", "imageID")
    name: str | None = None
    state: ContainerState | None = None
    lastState: ContainerState | None = None
    ready: bool | None = None
    restartCount: Int32 | None = None
    image: str | None = None
    imageID: str | None = None
    containerID: str | None = None
    started: bool | None = None
    allocatedResources: dict[str, Quantity] | None = None
    resources: ResourceRequirements | None = None
    volumeMounts: list[VolumeMountStatus] | None = None
    user: dict[str, Any] | None = None
    allocatedResourcesStatus: list[dict[str, Any]] | None = None
    stopSignal: str | None = None


class PodStatus(K8sModel):
    """The observed state of a pod: phase, conditions, IPs, container statuses."""

    observedGeneration: Int64 | None = None
    phase: str | None = None
    conditions: list[PodCondition] | None = Field(None, json_schema_extra=merge_key("type"))
    message: str | None = None
    reason: str | None = None
    nominatedNodeName: str | None = None
    hostIP: str | None = None
    hostIPs: list[HostIP] | None = Field(None, json_schema_extra=merge_key("ip"))
    podIP: str | None = None
    podIPs: list[PodIP] | None = Field(None, json_schema_extra=merge_key("ip"))
    startTime: Time | None = None
    initContainerStatuses: list[ContainerStatus] | None = None
    containerStatuses: list[ContainerStatus] | None = None
    qosClass: str | None = None
    ephemeralContainerStatuses: list[ContainerStatus] | None = None
    resize: str | None = None
    resourceClaimStatuses: list[dict[str, Any]] | None = None
    extendedResourceClaimStatus: dict[str, Any] | None = None


class Pod(K8sModel):
    """A group of containers scheduled together onto one node."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Pod")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None
    status: PodStatus | None = None


class PodTemplateSpec(K8sModel):
    """The pod a controller creates: metadata and spec."""

    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None


class ObjectReference(K8sModel):
    """A reference to any object, optionally to a field inside it."""

    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    apiVersion: str | None = None
    resourceVersion: str | None = None
    fieldPath: str | None = None


class Binding(K8sModel):
    """Binds a pod to a node (the scheduler's pods/binding subresource)."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Binding")
    k8s_required: ClassVar[tuple[str, ...]] = ("target",)
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    target: ObjectReference | None = None
