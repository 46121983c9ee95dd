"""Validation of NetworkPolicy, Ingress, IngressClass and EndpointSlice with Kubernetes' field paths
and messages (``ValidateNetworkPolicy``, ``ValidateIngressCreate``, ``ValidateIngressClass``,
``ValidateEndpointSlice`` and their updates, pkg/apis/{networking,discovery}/validation).

Registered in :data:`machinery.api.validation.CHECKS` through :data:`NETWORKING_CHECKS`.
"""

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from machinery.api import names
from machinery.api.names import Errors
from machinery.api.validation_pod import PROTOCOLS, label_selector
from machinery.errors import StatusCause

Obj = dict[str, Any]
Check = Callable[[Errors, Obj, Obj | None], None]

IMMUTABLE = "field is immutable"
CIDR_MESSAGE = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
POLICY_TYPES = ("Egress", "Ingress")
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_PORTS = 100
MAX_ENDPOINT_ADDRESSES = 100
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_WILDCARD = re.compile(r"^\*\.(" + names.DNS1123_SUBDOMAIN_FMT + ")$")
_DOMAIN_PREFIXED = re.compile(r"^" + names.DNS1123_SUBDOMAIN_FMT + r"/\S+$")


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of a CIDR (host bits allowed, as Go's ParseCIDR), or None when it is not one."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _ip_block(errs: Errors, path: str, block: Obj) -> None:
    cidr = str(block.get("cidr") or "")
    if not cidr:
        errs.required(f"{path}.cidr")
        return
    network = parse_cidr(cidr)
    if network is None:
        errs.invalid(f"{path}.cidr", cidr, CIDR_MESSAGE)
    for i, text in enumerate(block.get("except") or []):
        p = f"{path}.except[{i}]"
        inner = parse_cidr(str(text))
        if inner is None:
            errs.invalid(p, text, CIDR_MESSAGE)
        elif network is not None and (inner.version != network.version or inner.network_address not in network
                                      or inner.prefixlen <= network.prefixlen):
            errs.invalid(p, text, "must be a strict subset of `cidr`")


def _peer(errs: Errors, path: str, peer: Obj) -> None:
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            label_selector(errs, f"{path}.{key}", peer[key])
    if peer.get("ipBlock") is not None:
        count += 1
        _ip_block(errs, f"{path}.ipBlock", peer["ipBlock"])
    if count == 0:
        errs.required(path, "must specify a peer")
    elif count > 1 and peer.get("ipBlock") is not None:
        errs.forbidden(path, "may not specify both ipBlock and another peer")


def _policy_port(errs: Errors, path: str, port: Obj) -> None:
    errs.enum(f"{path}.protocol", port.get("protocol"), PROTOCOLS)
    number = port.get("port")
    end = port.get("endPort")
    if isinstance(number, int):
        errs.port(f"{path}.port", number)
    elif isinstance(number, str):
        errs.check(f"{path}.port", number, names.port_name)
    if end is None:
        return
    if isinstance(number, str):
        errs.forbidden(f"{path}.endPort", "may not be specified when `port` is non-numeric")
    elif number is None:
        errs.forbidden(f"{path}.endPort", "may not be specified when `port` is not specified")
    elif isinstance(end, int):
        if end < number:
            errs.invalid(f"{path}.endPort", end, "must be greater than or equal to `port`")
        errs.port(f"{path}.endPort", end)


def _network_policy(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    label_selector(errs, "spec.podSelector", spec.get("podSelector") or {})
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            p = f"spec.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                _policy_port(errs, f"{p}.ports[{j}]", port)
            for j, peer in enumerate(rule.get(peers) or []):
                _peer(errs, f"{p}.{peers}[{j}]", peer)
    types = spec.get("policyTypes") or []
    for i, kind in enumerate(types):
        errs.enum(f"spec.policyTypes[{i}]", kind, POLICY_TYPES)
    if len(types) > len(POLICY_TYPES):
        errs.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")


def _host(errs: Errors, path: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        errs.invalid(path, host, "must be a DNS name, not an IP address")
        return
    if host.startswith("*"):
        if not _WILDCARD.match(host):
            errs.invalid(path, host, "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid "
                                     "DNS subdomain, which must consist of lower case alphanumeric characters, "
                                     "'-' or '.' and end with an alphanumeric character "
                                     "(e.g. '*.example.com', regex used for validation is "
                                     r"'\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    else:
        errs.check(path, host, names.dns1123_subdomain)


def _backend(errs: Errors, path: str, backend: Obj) -> None:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        errs.invalid(path, "", "cannot set both resource and service backends")
    elif service is None and resource is None:
        errs.invalid(path, "", "resource or service backend is required")
    if service is not None:
        if not service.get("name"):
            errs.required(f"{path}.service.name")
        else:
            errs.check(f"{path}.service.name", str(service["name"]), names.dns1035_label)
        port = service.get("port") or {}
        if port.get("name") and port.get("number"):
            errs.invalid(f"{path}.service.port", port, "cannot set both port name & port number")
        elif port.get("name"):
            errs.check(f"{path}.service.port.name", str(port["name"]), names.port_name)
        elif port.get("number") is not None:
            errs.port(f"{path}.service.port.number", port["number"])
        else:
            errs.required(f"{path}.service.port", "port name or number is required")
    if resource is not None:
        for key in ("kind", "name"):
            if not resource.get(key):
                errs.required(f"{path}.resource.{key}")


def _http_path(errs: Errors, path: str, entry: Obj) -> None:
    kind, text = entry.get("pathType"), str(entry.get("path") or "")
    if kind is None:
        errs.required(f"{path}.pathType", "pathType must be specified")
    elif kind not in PATH_TYPES:
        errs.not_supported(f"{path}.pathType", kind, PATH_TYPES)
    elif kind in ("Exact", "Prefix"):
        if not text.startswith("/"):
            errs.invalid(f"{path}.path", text, "must be an absolute path")
        for bad in _INVALID_PATH_SEQUENCES:
            if bad in text:
                errs.invalid(f"{path}.path", text, f"must not contain '{bad}'")
        for bad in _INVALID_PATH_SUFFIXES:
            if text.endswith(bad):
                errs.invalid(f"{path}.path", text, f"cannot end with '{bad}'")
    elif text and not text.startswith("/"):
        errs.invalid(f"{path}.path", text, "must be an absolute path")
    if entry.get("backend") is None:
        errs.required(f"{path}.backend")
    else:
        _backend(errs, f"{path}.backend", entry["backend"])


def _ingress(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        errs.invalid("spec", rules, "either `defaultBackend` or `rules` must be specified")
    if spec.get("defaultBackend") is not None:
        _backend(errs, "spec.defaultBackend", spec["defaultBackend"])
    for i, rule in enumerate(rules):
        p = f"spec.rules[{i}]"
        if rule.get("host"):
            _host(errs, f"{p}.host", str(rule["host"]))
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths") or []
        if not paths:
            errs.required(f"{p}.http.paths")
        for j, entry in enumerate(paths):
            _http_path(errs, f"{p}.http.paths[{j}]", entry)
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            _host(errs, f"spec.tls[{i}].hosts[{j}]", str(host))
        if tls.get("secretName"):
            errs.check(f"spec.tls[{i}].secretName", str(tls["secretName"]), names.dns1123_subdomain)
    if spec.get("ingressClassName"):
        errs.check("spec.ingressClassName", str(spec["ingressClassName"]), names.dns1123_subdomain)


def _ingress_class(errs: Errors, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    controller = str(spec.get("controller") or "")
    if not controller:
        errs.required("spec.controller")
    elif len(controller) > 250:
        errs.too_long("spec.controller", 250)
    elif not _DOMAIN_PREFIXED.match(controller):
        errs.invalid("spec.controller", controller, 'must be a domain-prefixed path (such as "acme.io/foo")')
    if old is not None and (old.get("spec") or {}).get("controller") != spec.get("controller"):
        errs.invalid("spec.controller", spec.get("controller"), IMMUTABLE)
    params = spec.get("parameters")
    if params is not None:
        for key in ("kind", "name"):
            if not params.get(key):
                errs.required(f"spec.parameters.{key}")
        scope = params.get("scope")
        errs.enum("spec.parameters.scope", scope, ("Cluster", "Namespace"))
        if scope == "Namespace" and not params.get("namespace"):
            errs.required("spec.parameters.namespace", "`parameters.scope` is set to 'Namespace'")
        if scope != "Namespace" and params.get("namespace"):
            errs.forbidden("spec.parameters.namespace", "`parameters.scope` is set to 'Cluster'")


def _address(errs: Errors, path: str, address: str, kind: str) -> None:
    if kind == "FQDN":
        errs.check(path, address, names.dns1123_subdomain)
        return
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        errs.invalid(path, address, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        return
    if kind == "IPv4" and parsed.version != 4:
        errs.invalid(path, address, "must be an IPv4 address")
    elif kind == "IPv6" and parsed.version != 6:
        errs.invalid(path, address, "must be an IPv6 address")


def _endpoint_slice(errs: Errors, obj: Obj, old: Obj | None) -> None:
    kind = obj.get("addressType")
    if not kind:
        errs.required("addressType")
    else:
        errs.enum("addressType", kind, ADDRESS_TYPES)
    if old is not None and old.get("addressType") != kind:
        errs.invalid("addressType", kind, IMMUTABLE)
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > MAX_SLICE_ENDPOINTS:
        errs.causes.append(StatusCause(
            "endpoints", f"Too many: {len(endpoints)}: must have at most {MAX_SLICE_ENDPOINTS} items",
            "FieldValueTooMany"))
    for i, endpoint in enumerate(endpoints):
        p = f"endpoints[{i}]"
        addresses = endpoint.get("addresses") or []
        if not addresses:
            errs.required(f"{p}.addresses", "must contain at least 1 address")
        elif len(addresses) > MAX_ENDPOINT_ADDRESSES:
            errs.causes.append(StatusCause(
                f"{p}.addresses", f"Too many: {len(addresses)}: must have at most {MAX_ENDPOINT_ADDRESSES} items",
                "FieldValueTooMany"))
        for j, address in enumerate(addresses[:1] if kind != "FQDN" else addresses):
            _address(errs, f"{p}.addresses[{j}]", str(address), str(kind))
        if endpoint.get("hostname"):
            errs.check(f"{p}.hostname", str(endpoint["hostname"]), names.dns1123_label)
        if endpoint.get("nodeName"):
            errs.check(f"{p}.nodeName", str(endpoint["nodeName"]), names.dns1123_subdomain)
    ports = obj.get("ports") or []
    if len(ports) > MAX_SLICE_PORTS:
        errs.causes.append(StatusCause(
            "ports", f"Too many: {len(ports)}: must have at most {MAX_SLICE_PORTS} items", "FieldValueTooMany"))
    seen: set[str] = set()
    for i, port in enumerate(ports):
        p = f"ports[{i}]"
        name = str(port.get("name") or "")
        if name:
            errs.check(f"{p}.name", name, names.dns1123_label)
        if name in seen:
            errs.duplicate(f"{p}.name", name)
        seen.add(name)
        errs.enum(f"{p}.protocol", port.get("protocol"), PROTOCOLS)
        if port.get("port") is not None:
            errs.port(f"{p}.port", port["port"])


NETWORKING_CHECKS: dict[str, Check] = {
    "NetworkPolicy": _network_policy,
    "Ingress": _ingress,
    "IngressClass": _ingress_class,
    "EndpointSlice": _endpoint_slice,
}
