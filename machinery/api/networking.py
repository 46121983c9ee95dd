"""networking.k8s.io/v1 NetworkPolicy, Ingress and IngressClass, and discovery.k8s.io/v1 EndpointSlice.

Registered as kinds in ``machinery.api``; OpenAPI names under ``io.k8s.api.networking.v1`` and
``io.k8s.api.discovery.v1``. These models only check and clean input: the node agent
(``kubelet.network.netpol``) and the EndpointSlice controller read the objects as plain dicts;
field rules live in :mod:`machinery.api.validation_networking`.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Int32, IntOrString, K8sModel, merge_key
from machinery.api.meta import LabelSelector, ObjectMeta
from machinery.api.pod import ObjectReference


class NetworkingModel(K8sModel):
    """Base of the networking.k8s.io/v1 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.networking.v1"


class IPBlock(NetworkingModel):
    """A CIDR a rule allows, minus the ``except`` CIDRs inside it."""

    k8s_required: ClassVar[tuple[str, ...]] = ("cidr",)
    cidr: str | None = None
    except_: list[str] | None = Field(None, alias="except")


class NetworkPolicyPeer(NetworkingModel):
    """Pods (by pod and/or namespace selector) or an IP block a rule allows."""

    podSelector: LabelSelector | None = None
    namespaceSelector: LabelSelector | None = None
    ipBlock: IPBlock | None = None


class NetworkPolicyPort(NetworkingModel):
    """A port (number or named container port), or a range up to ``endPort``."""

    protocol: str | None = None
    port: IntOrString | None = None
    endPort: Int32 | None = None


class NetworkPolicyIngressRule(NetworkingModel):
    """Traffic allowed in: from any of ``from`` to any of ``ports`` (empty lists match everything)."""

    ports: list[NetworkPolicyPort] | None = None
    from_: list[NetworkPolicyPeer] | None = Field(None, alias="from")


class NetworkPolicyEgressRule(NetworkingModel):
    """Traffic allowed out: to any of ``to`` on any of ``ports``."""

    ports: list[NetworkPolicyPort] | None = None
    to: list[NetworkPolicyPeer] | None = None


class NetworkPolicySpec(NetworkingModel):
    """The pods a policy isolates and the traffic it allows them."""

    podSelector: LabelSelector | None = None
    ingress: list[NetworkPolicyIngressRule] | None = None
    egress: list[NetworkPolicyEgressRule] | None = None
    policyTypes: list[str] | None = None


class NetworkPolicy(NetworkingModel):
    """Which traffic the selected pods may receive and send."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("networking.k8s.io", "v1", "NetworkPolicy")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: NetworkPolicySpec | None = None


class ServiceBackendPort(NetworkingModel):
    """A Service port by name or number."""

    name: str | None = None
    number: Int32 | None = None


class IngressServiceBackend(NetworkingModel):
    """A Service (same namespace) and one of its ports."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None
    port: ServiceBackendPort | None = None


class TypedLocalObjectReference(K8sModel):
    """A typed object in the same namespace."""

    k8s_required: ClassVar[tuple[str, ...]] = ("kind", "name")
    apiGroup: str | None = None
    kind: str | None = None
    name: str | None = None


class IngressBackend(NetworkingModel):
    """Where matching requests go: a Service or another resource."""

    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None


class HTTPIngressPath(NetworkingModel):
    """A path (matched as ``pathType`` says) and its backend."""

    k8s_required: ClassVar[tuple[str, ...]] = ("pathType", "backend")
    path: str | None = None
    pathType: str | None = None
    backend: IngressBackend | None = None


class HTTPIngressRuleValue(NetworkingModel):
    """The paths of one host."""

    k8s_required: ClassVar[tuple[str, ...]] = ("paths",)
    paths: list[HTTPIngressPath] | None = None


class IngressRule(NetworkingModel):
    """Requests for ``host`` (any host when empty) and their paths."""

    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(NetworkingModel):
    """Hosts served with the certificate in ``secretName``."""

    hosts: list[str] | None = None
    secretName: str | None = None


class IngressSpec(NetworkingModel):
    """The routing rules of an Ingress."""

    ingressClassName: str | None = None
    defaultBackend: IngressBackend | None = None
    tls: list[IngressTLS] | None = None
    rules: list[IngressRule] | None = None


class IngressPortStatus(NetworkingModel):
    """A port of a load balancer address and its error, if any."""

    k8s_required: ClassVar[tuple[str, ...]] = ("port", "protocol")
    port: Int32 | None = None
    protocol: str | None = None
    error: str | None = None


class IngressLoadBalancerIngress(NetworkingModel):
    """An address the Ingress is reachable at."""

    ip: str | None = None
    hostname: str | None = None
    ports: list[IngressPortStatus] | None = None


class IngressLoadBalancerStatus(NetworkingModel):
    """The addresses of the load balancer."""

    ingress: list[IngressLoadBalancerIngress] | None = None


class IngressStatus(NetworkingModel):
    """What the ingress controller reports."""

    loadBalancer: IngressLoadBalancerStatus | None = None


class Ingress(NetworkingModel):
    """HTTP(S) routes from outside the cluster to Services."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("networking.k8s.io", "v1", "Ingress")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: IngressSpec | None = None
    status: IngressStatus | None = None


class IngressClassParametersReference(NetworkingModel):
    """Controller-specific parameters of an IngressClass."""

    k8s_required: ClassVar[tuple[str, ...]] = ("kind", "name")
    apiGroup: str | None = None
    kind: str | None = None
    name: str | None = None
    scope: str | None = None
    namespace: str | None = None


class IngressClassSpec(NetworkingModel):
    """The controller that implements the class."""

    controller: str | None = None
    parameters: IngressClassParametersReference | None = None


class IngressClass(NetworkingModel):
    """A class of Ingresses and the controller that serves them."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("networking.k8s.io", "v1", "IngressClass")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: IngressClassSpec | None = None


class DiscoveryModel(K8sModel):
    """Base of the discovery.k8s.io/v1 types."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.discovery.v1"


class EndpointConditions(DiscoveryModel):
    """Whether an endpoint is ready, serving and terminating."""

    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class ForZone(DiscoveryModel):
    """A zone a hint names."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None


class ForNode(DiscoveryModel):
    """A node a hint names."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None


class EndpointHints(DiscoveryModel):
    """Topology-aware routing hints."""

    forZones: list[ForZone] | None = None
    forNodes: list[ForNode] | None = None


class Endpoint(DiscoveryModel):
    """One backend: its addresses, conditions and where it runs."""

    k8s_required: ClassVar[tuple[str, ...]] = ("addresses",)
    addresses: list[str] | None = Field(None, json_schema_extra=merge_key(None, "set"))
    conditions: EndpointConditions | None = None
    hostname: str | None = None
    targetRef: ObjectReference | None = None
    deprecatedTopology: dict[str, str] | None = None
    nodeName: str | None = None
    zone: str | None = None
    hints: EndpointHints | None = None


class EndpointPort(DiscoveryModel):
    """A port every endpoint of the slice listens on."""

    name: str | None = None
    protocol: str | None = None
    port: Int32 | None = None
    appProtocol: str | None = None


class EndpointSlice(DiscoveryModel):
    """A subset of the endpoints of a Service."""

    k8s_gvk: ClassVar[tuple[str, str, str] | None] = ("discovery.k8s.io", "v1", "EndpointSlice")
    k8s_required: ClassVar[tuple[str, ...]] = ("addressType", "endpoints")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    addressType: str | None = None
    endpoints: list[Endpoint] | None = None
    ports: list[EndpointPort] | None = None


__all__ = ["EndpointSlice", "Ingress", "IngressClass", "NetworkPolicy"]
