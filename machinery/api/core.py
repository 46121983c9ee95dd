"""core/v1 kinds other than Pod and Node: Namespace, Service, Endpoints, ConfigMap, Secret,
ServiceAccount, Event.

Registered as kinds in ``machinery.api``; field names are exactly Kubernetes' JSON names.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Bytes, Int32, IntOrString, K8sModel, MicroTime, Time, merge_key
from machinery.api.meta import Condition, ObjectMeta
from machinery.api.pod import ObjectReference
from machinery.api.volume import LocalObjectReference


class NamespaceSpec(K8sModel):
    """Finalizers that must run before the namespace is removed."""

    finalizers: list[str] | None = None


class NamespaceCondition(K8sModel):
    """A condition of a namespace (mostly about deletion progress)."""

    type: str | None = None
    status: str | None = None
    lastTransitionTime: Time | None = None
    reason: str | None = None
    message: str | None = None


class NamespaceStatus(K8sModel):
    """Phase (Active or Terminating) and conditions."""

    phase: str | None = None
    conditions: list[NamespaceCondition] | None = Field(None, json_schema_extra=merge_key("type"))


class Namespace(K8sModel):
    """A scope for names; most objects live in one."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Namespace")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


class ServicePort(K8sModel):
    """A port the service exposes and the pod port it forwards to."""

    k8s_required: ClassVar[tuple[str, ...]] = ("port",)
    name: str | None = None
    protocol: str | None = None
    appProtocol: str | None = None
    port: Int32 | None = None
    targetPort: IntOrString | None = None
    nodePort: Int32 | None = None


class ClientIPConfig(K8sModel):
    """Timeout of ClientIP session affinity."""

    timeoutSeconds: Int32 | None = None


class SessionAffinityConfig(K8sModel):
    """Settings of session affinity."""

    clientIP: ClientIPConfig | None = None


class ServiceSpec(K8sModel):
    """Ports, pod selector, virtual IP and traffic policies of a service."""

    ports: list[ServicePort] | None = Field(None, json_schema_extra=merge_key("port"))
    selector: dict[str, str] | None = None
    clusterIP: str | None = None
    clusterIPs: list[str] | None = None
    type: str | None = None
    externalIPs: list[str] | None = None
    sessionAffinity: str | None = None
    loadBalancerIP: str | None = None
    loadBalancerSourceRanges: list[str] | None = None
    externalName: str | None = None
    externalTrafficPolicy: str | None = None
    healthCheckNodePort: Int32 | None = None
    publishNotReadyAddresses: bool | None = None
    sessionAffinityConfig: SessionAffinityConfig | None = None
    ipFamilies: list[str] | None = None
    ipFamilyPolicy: str | None = None
    allocateLoadBalancerNodePorts: bool | None = None
    loadBalancerClass: str | None = None
    internalTrafficPolicy: str | None = None
    trafficDistribution: str | None = None


class PortStatus(K8sModel):
    """The state of one load-balancer port."""

    port: Int32 | None = None
    protocol: str | None = None
    error: str | None = None


class LoadBalancerIngress(K8sModel):
    """An ingress point of a load balancer."""

    ip: str | None = None
    hostname: str | None = None
    ipMode: str | None = None
    ports: list[PortStatus] | None = None


class LoadBalancerStatus(K8sModel):
    """The load balancer's ingress points."""

    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(K8sModel):
    """The observed state of a service (load balancer, conditions)."""

    loadBalancer: LoadBalancerStatus | None = None
    conditions: list[Condition] | None = Field(None, json_schema_extra=merge_key("type"))


class Service(K8sModel):
    """A stable virtual IP and DNS name in front of a set of pods."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Service")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: ServiceSpec | None = None
    status: ServiceStatus | None = None


class EndpointAddress(K8sModel):
    """One backend IP of a service."""

    k8s_required: ClassVar[tuple[str, ...]] = ("ip",)
    ip: str | None = None
    hostname: str | None = None
    nodeName: str | None = None
    targetRef: ObjectReference | None = None


class EndpointPort(K8sModel):
    """A port of the backends."""

    k8s_required: ClassVar[tuple[str, ...]] = ("port",)
    name: str | None = None
    port: Int32 | None = None
    protocol: str | None = None
    appProtocol: str | None = None


class EndpointSubset(K8sModel):
    """Addresses that share a set of ports."""

    addresses: list[EndpointAddress] | None = None
    notReadyAddresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(K8sModel):
    """The backend addresses of a service."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Endpoints")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    subsets: list[EndpointSubset] | None = None


class ConfigMap(K8sModel):
    """Non-secret configuration as key-value pairs."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "ConfigMap")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    immutable: bool | None = None
    data: dict[str, str] | None = None
    binaryData: dict[str, Bytes] | None = None


class Secret(K8sModel):
    """Sensitive data (passwords, tokens, keys) as base64-encoded values."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Secret")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    immutable: bool | None = None
    data: dict[str, Bytes] | None = None
    stringData: dict[str, str] | None = None
    type: str | None = None


class ServiceAccount(K8sModel):
    """An identity for processes running in pods."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "ServiceAccount")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    secrets: list[ObjectReference] | None = Field(None, json_schema_extra=merge_key("name"))
    imagePullSecrets: list[LocalObjectReference] | None = None
    automountServiceAccountToken: bool | None = None


class EventSource(K8sModel):
    """The component (and host) that reported an event."""

    component: str | None = None
    host: str | None = None


class EventSeries(K8sModel):
    """A series of repeated events."""

    count: Int32 | None = None
    lastObservedTime: MicroTime | None = None


class Event(K8sModel):
    """A report of something that happened to an object."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("", "v1", "Event")
    k8s_required: ClassVar[tuple[str, ...]] = ("metadata", "involvedObject")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    involvedObject: ObjectReference | None = None
    reason: str | None = None
    message: str | None = None
    source: EventSource | None = None
    firstTimestamp: Time | None = None
    lastTimestamp: Time | None = None
    count: Int32 | None = None
    type: str | None = None
    eventTime: MicroTime | None = None
    series: EventSeries | None = None
    action: str | None = None
    related: ObjectReference | None = None
    reportingComponent: str | None = None
    reportingInstance: str | None = None
