"""Validation of pod specs (pods and the pod templates of Deployments and ReplicaSets).

Called by :mod:`machinery.api.validation`; records every problem in an :class:`Errors` with the
field path rooted at the given prefix (``spec`` or ``spec.template.spec``).
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from machinery.api import names
from machinery.api.base import QUANTITY_RE
from machinery.api.names import Errors
from machinery.api.volume import VOLUME_SOURCES

Obj = dict[str, Any]

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
MESSAGE_POLICIES = ("FallbackToLogsOnError", "File")
SELECTOR_OPS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")
TOLERATION_OPS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
WHEN_UNSATISFIABLE = ("DoNotSchedule", "ScheduleAnyway")

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


def parse_quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity, or None when it is malformed."""
    m = QUANTITY_RE.match(text.strip())
    if not m:
        return None
    number, suffix = m.groups()
    try:
        value = Decimal(number)
        if suffix in _SUFFIXES:
            return value * _SUFFIXES[suffix]
        if suffix[:1] in ("e", "E"):
            return value * (Decimal(10) ** int(suffix[1:]))
    except (InvalidOperation, ValueError):
        return None
    return None


def _resources(errs: Errors, path: str, res: Obj) -> None:
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    for section, values in (("limits", limits), ("requests", requests)):
        for name, qty in values.items():
            field = f"{path}.{section}[{name}]"
            errs.check(field, name, names.qualified_name)
            parsed = parse_quantity(qty)
            if parsed is None:
                errs.invalid(field, qty, "must be a valid quantity")
            elif parsed < 0:
                errs.invalid(field, qty, "must be greater than or equal to 0")
    for name, qty in requests.items():
        if name in limits:
            req, lim = parse_quantity(qty), parse_quantity(limits[name])
            if req is not None and lim is not None and req > lim:
                errs.invalid(f"{path}.requests", qty, f"must be less than or equal to {name} limit of {limits[name]}")


def _probe(errs: Errors, path: str, probe: Obj, *, single_success: bool) -> None:
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
    if not handlers:
        errs.required(path, "must specify a handler type")
    elif len(handlers) > 1:
        errs.forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type")
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.non_negative(f"{path}.{key}", probe.get(key))
    if single_success and probe.get("successThreshold", 1) != 1:
        errs.invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1")
    http = probe.get("httpGet")
    if http is not None:
        _port_ref(errs, f"{path}.httpGet.port", http.get("port"))
        errs.enum(f"{path}.httpGet.scheme", http.get("scheme"), ("HTTP", "HTTPS"))
    tcp = probe.get("tcpSocket")
    if tcp is not None:
        _port_ref(errs, f"{path}.tcpSocket.port", tcp.get("port"))


def _port_ref(errs: Errors, path: str, port: Any) -> None:
    if port is None:
        errs.required(path)
    elif isinstance(port, int):
        errs.port(path, port)
    else:
        errs.check(path, port, names.port_name)


def _container(errs: Errors, path: str, c: Obj, volumes: set[str], *, init: bool) -> None:
    name = c.get("name")
    if not name:
        errs.required(f"{path}.name")
    else:
        errs.check(f"{path}.name", name, names.dns1123_label)
    if not c.get("image"):
        errs.required(f"{path}.image")
    errs.enum(f"{path}.imagePullPolicy", c.get("imagePullPolicy"), PULL_POLICIES)
    errs.enum(f"{path}.terminationMessagePolicy", c.get("terminationMessagePolicy"), MESSAGE_POLICIES)
    port_names: set[str] = set()
    for i, port in enumerate(c.get("ports", ())):
        p = f"{path}.ports[{i}]"
        if "containerPort" not in port:
            errs.required(f"{p}.containerPort")
        else:
            errs.port(f"{p}.containerPort", port["containerPort"])
        if port.get("hostPort"):
            errs.port(f"{p}.hostPort", port["hostPort"])
        errs.enum(f"{p}.protocol", port.get("protocol"), PROTOCOLS)
        if "name" in port:
            errs.check(f"{p}.name", port["name"], names.port_name)
            if port["name"] in port_names:
                errs.duplicate(f"{p}.name", port["name"])
            port_names.add(port["name"])
    for i, env in enumerate(c.get("env", ())):
        if not env.get("name"):
            errs.required(f"{path}.env[{i}].name")
    mount_paths: set[str] = set()
    for i, mount in enumerate(c.get("volumeMounts", ())):
        p = f"{path}.volumeMounts[{i}]"
        if not mount.get("name"):
            errs.required(f"{p}.name")
        elif mount["name"] not in volumes:
            errs.not_found(f"{p}.name", mount["name"])
        if not mount.get("mountPath"):
            errs.required(f"{p}.mountPath")
        elif mount["mountPath"] in mount_paths:
            errs.invalid(f"{p}.mountPath", mount["mountPath"], "must be unique")
        else:
            mount_paths.add(mount["mountPath"])
    if c.get("resources"):
        _resources(errs, f"{path}.resources", c["resources"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            if init and c.get("restartPolicy") != "Always":
                errs.forbidden(f"{path}.{probe}", "may not be set for init containers without restartPolicy=Always")
            _probe(errs, f"{path}.{probe}", c[probe], single_success=probe != "readinessProbe")
    if c.get("restartPolicy") is not None:
        if init:
            errs.enum(f"{path}.restartPolicy", c["restartPolicy"], ("Always",))
        else:
            errs.forbidden(f"{path}.restartPolicy", "may not be set for non-init containers")


def _selector_reqs(errs: Errors, path: str, reqs: list[Obj], ops: tuple[str, ...]) -> None:
    for i, req in enumerate(reqs):
        p = f"{path}[{i}]"
        if not req.get("key"):
            errs.required(f"{p}.key")
        op = req.get("operator")
        if op is None:
            errs.required(f"{p}.operator")
        elif op not in ops:
            errs.not_supported(f"{p}.operator", op, ops)
        values = req.get("values") or []
        if op in ("In", "NotIn") and not values:
            errs.required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        if op in ("Exists", "DoesNotExist") and values:
            errs.forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        if op in ("Gt", "Lt") and len(values) != 1:
            errs.required(f"{p}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'")


def label_selector(errs: Errors, path: str, selector: Obj) -> None:
    """Validate a metav1.LabelSelector."""
    for key, value in (selector.get("matchLabels") or {}).items():
        errs.check(f"{path}.matchLabels", key, names.qualified_name)
        errs.check(f"{path}.matchLabels", value, names.label_value)
    _selector_reqs(errs, f"{path}.matchExpressions", selector.get("matchExpressions") or [],
                   ("DoesNotExist", "Exists", "In", "NotIn"))


def _affinity(errs: Errors, path: str, aff: Obj) -> None:
    node = aff.get("nodeAffinity") or {}
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        p = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        terms = required.get("nodeSelectorTerms") or []
        if not terms:
            errs.required(p, "must have at least one node selector term")
        for i, term in enumerate(terms):
            _selector_reqs(errs, f"{p}[{i}].matchExpressions", term.get("matchExpressions") or [], SELECTOR_OPS)
    for i, pref in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        p = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        _weight(errs, f"{p}.weight", pref.get("weight"))
        _selector_reqs(errs, f"{p}.preference.matchExpressions",
                       (pref.get("preference") or {}).get("matchExpressions") or [], SELECTOR_OPS)
    for kind in ("podAffinity", "podAntiAffinity"):
        rules = aff.get(kind) or {}
        for i, term in enumerate(rules.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            _pod_affinity_term(errs, f"{path}.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term)
        for i, wterm in enumerate(rules.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            p = f"{path}.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            _weight(errs, f"{p}.weight", wterm.get("weight"))
            _pod_affinity_term(errs, f"{p}.podAffinityTerm", wterm.get("podAffinityTerm") or {})


def _weight(errs: Errors, path: str, weight: Any) -> None:
    if not isinstance(weight, int) or not 1 <= weight <= 100:
        errs.invalid(path, weight, "must be in the range 1-100")


def _pod_affinity_term(errs: Errors, path: str, term: Obj) -> None:
    if not term.get("topologyKey"):
        errs.required(f"{path}.topologyKey", "can not be empty")
    else:
        errs.check(f"{path}.topologyKey", term["topologyKey"], names.qualified_name)
    if term.get("labelSelector"):
        label_selector(errs, f"{path}.labelSelector", term["labelSelector"])


def _tolerations(errs: Errors, path: str, tolerations: list[Obj]) -> None:
    for i, tol in enumerate(tolerations):
        p = f"{path}[{i}]"
        if tol.get("key"):
            errs.check(f"{p}.key", tol["key"], names.qualified_name)
        op = tol.get("operator", "Equal")
        if not tol.get("key") and op != "Exists":
            errs.invalid(f"{p}.operator", op, "operator must be Exists when `key` is empty, "
                                              "which means \"match all values and all keys\"")
        if op == "Exists" and tol.get("value"):
            errs.invalid(f"{p}.operator", tol["value"], "value must be empty when `operator` is 'Exists'")
        errs.enum(f"{p}.operator", tol.get("operator"), TOLERATION_OPS)
        errs.enum(f"{p}.effect", tol.get("effect") or None, TAINT_EFFECTS)
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            errs.invalid(f"{p}.effect", tol.get("effect", ""),
                         "effect must be 'NoExecute' when `tolerationSeconds` is set")


def pod_spec(errs: Errors, path: str, spec: Obj) -> None:
    """Validate a PodSpec rooted at ``path``."""
    volumes: set[str] = set()
    for i, vol in enumerate(spec.get("volumes", ())):
        p = f"{path}.volumes[{i}]"
        name = vol.get("name")
        if not name:
            errs.required(f"{p}.name")
        else:
            errs.check(f"{p}.name", name, names.dns1123_label)
            if name in volumes:
                errs.duplicate(f"{p}.name", name)
            volumes.add(name)
        sources = [s for s in VOLUME_SOURCES if s in vol]
        if len(sources) > 1:
            errs.forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type")
        elif not sources:
            errs.required(p, "must specify a volume type")
    containers = spec.get("containers") or []
    if not containers:
        errs.required(f"{path}.containers")
    seen: set[str] = set()
    for key, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(spec.get(key, ())):
            p = f"{path}.{key}[{i}]"
            _container(errs, p, c, volumes, init=init)
            name = c.get("name")
            if name:
                if name in seen:
                    errs.duplicate(f"{p}.name", name)
                seen.add(name)
    errs.enum(f"{path}.restartPolicy", spec.get("restartPolicy"), RESTART_POLICIES)
    errs.enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    if spec.get("dnsPolicy") == "None" and not spec.get("dnsConfig"):
        errs.required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")
    errs.non_negative(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    errs.positive(f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"))
    for key, value in (spec.get("nodeSelector") or {}).items():
        errs.check(f"{path}.nodeSelector", key, names.qualified_name)
        errs.check(f"{path}.nodeSelector", value, names.label_value)
    for field in ("serviceAccountName", "nodeName", "priorityClassName"):
        if spec.get(field):
            errs.check(f"{path}.{field}", spec[field], names.dns1123_subdomain)
    for field in ("hostname", "subdomain"):
        if spec.get(field):
            errs.check(f"{path}.{field}", spec[field], names.dns1123_label)
    for i, secret in enumerate(spec.get("imagePullSecrets", ())):
        if not secret.get("name"):
            errs.required(f"{path}.imagePullSecrets[{i}].name")
    if spec.get("affinity"):
        _affinity(errs, f"{path}.affinity", spec["affinity"])
    _tolerations(errs, f"{path}.tolerations", spec.get("tolerations") or [])
    for i, tsc in enumerate(spec.get("topologySpreadConstraints", ())):
        p = f"{path}.topologySpreadConstraints[{i}]"
        errs.positive(f"{p}.maxSkew", tsc.get("maxSkew", 0))
        if not tsc.get("topologyKey"):
            errs.required(f"{p}.topologyKey", "can not be empty")
        if tsc.get("whenUnsatisfiable") is None:
            errs.required(f"{p}.whenUnsatisfiable")
        errs.enum(f"{p}.whenUnsatisfiable", tsc.get("whenUnsatisfiable"), WHEN_UNSATISFIABLE)
        if tsc.get("minDomains") is not None:
            errs.positive(f"{p}.minDomains", tsc["minDomains"])
