"""Protobuf field tables for networking.k8s.io/v1 (Ingress, IngressClass, NetworkPolicy) and
discovery.k8s.io/v1 (EndpointSlice).

kubectl >= 1.32 sends ``kubectl create ingress`` (and other built-in kinds) as protobuf. Field numbers
and names are Kubernetes' own (api ``networking/v1`` and ``discovery/v1`` ``generated.proto``);
``keep=True`` marks pointer fields and fields without ``omitempty``. Read by
:mod:`machinery.protobuf.schema`.
"""

from __future__ import annotations

from machinery.protobuf.fields import MessageTable, b, i, inline, ios, msg, s, slist, smap

NETWORKING_MESSAGES: dict[str, MessageTable] = {
    "Ingress": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "IngressSpec"), 3: msg("status", "IngressStatus")},
    "IngressSpec": {1: msg("defaultBackend", "IngressBackend"), 2: msg("tls", "IngressTLS", repeated=True),
                    3: msg("rules", "IngressRule", repeated=True), 4: s("ingressClassName", keep=True)},
    "IngressBackend": {3: msg("resource", "TypedLocalObjectReference"),
                       4: msg("service", "IngressServiceBackend")},
    "TypedLocalObjectReference": {1: s("apiGroup", keep=True), 2: s("kind", keep=True), 3: s("name", keep=True)},
    "IngressServiceBackend": {1: s("name", keep=True), 2: msg("port", "ServiceBackendPort")},
    "ServiceBackendPort": {1: s("name"), 2: i("number")},
    "IngressTLS": {1: slist("hosts"), 2: s("secretName")},
    "IngressRule": {1: s("host"), 2: inline("IngressRuleValue")},
    "IngressRuleValue": {1: msg("http", "HTTPIngressRuleValue")},
    "HTTPIngressRuleValue": {1: msg("paths", "HTTPIngressPath", repeated=True)},
    "HTTPIngressPath": {1: s("path"), 2: msg("backend", "IngressBackend"), 3: s("pathType", keep=True)},
    "IngressStatus": {1: msg("loadBalancer", "IngressLoadBalancerStatus")},
    "IngressLoadBalancerStatus": {1: msg("ingress", "IngressLoadBalancerIngress", repeated=True)},
    "IngressLoadBalancerIngress": {1: s("ip"), 2: s("hostname"), 4: msg("ports", "IngressPortStatus", repeated=True)},
    "IngressPortStatus": {1: i("port", keep=True), 2: s("protocol", keep=True), 3: s("error", keep=True)},
    "IngressClass": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "IngressClassSpec")},
    "IngressClassSpec": {1: s("controller"), 2: msg("parameters", "IngressClassParametersReference")},
    "IngressClassParametersReference": {1: s("apiGroup", keep=True), 2: s("kind", keep=True), 3: s("name", keep=True),
                                        4: s("scope", keep=True), 5: s("namespace", keep=True)},
    "NetworkPolicy": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "NetworkPolicySpec")},
    "NetworkPolicySpec": {1: msg("podSelector", "LabelSelector"),
                          2: msg("ingress", "NetworkPolicyIngressRule", repeated=True),
                          3: msg("egress", "NetworkPolicyEgressRule", repeated=True), 4: slist("policyTypes")},
    "NetworkPolicyIngressRule": {1: msg("ports", "NetworkPolicyPort", repeated=True),
                                 2: msg("from", "NetworkPolicyPeer", repeated=True)},
    "NetworkPolicyEgressRule": {1: msg("ports", "NetworkPolicyPort", repeated=True),
                                2: msg("to", "NetworkPolicyPeer", repeated=True)},
    "NetworkPolicyPeer": {1: msg("podSelector", "LabelSelector"), 2: msg("namespaceSelector", "LabelSelector"),
                          3: msg("ipBlock", "IPBlock")},
    "NetworkPolicyPort": {1: s("protocol", keep=True), 2: ios("port"), 3: i("endPort", keep=True)},
    "IPBlock": {1: s("cidr", keep=True), 2: slist("except")},
}

DISCOVERY_MESSAGES: dict[str, MessageTable] = {
    "EndpointSlice": {1: msg("metadata", "ObjectMeta"), 2: msg("endpoints", "Endpoint", repeated=True),
                      3: msg("ports", "EndpointPort", repeated=True), 4: s("addressType", keep=True)},
    "Endpoint": {1: slist("addresses"), 2: msg("conditions", "EndpointConditions"), 3: s("hostname", keep=True),
                 4: msg("targetRef", "ObjectReference"), 5: smap("deprecatedTopology"), 6: s("nodeName", keep=True),
                 7: s("zone", keep=True)},
    "EndpointConditions": {1: b("ready", keep=True), 2: b("serving", keep=True), 3: b("terminating", keep=True)},
    "EndpointPort": {1: s("name", keep=True), 2: s("protocol", keep=True), 3: i("port", keep=True),
                     4: s("appProtocol", keep=True)},
}
