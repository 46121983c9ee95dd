"""Defaults and validation of admission webhook configurations (admissionregistration.k8s.io/v1).

Kubernetes' rules and wording for MutatingWebhookConfiguration and ValidatingWebhookConfiguration:
webhook names are fully qualified (three or more dot-separated segments) and unique within a
configuration; ``sideEffects`` is ``None`` or ``NoneOnDryRun``; ``admissionReviewVersions`` is
required and must include ``v1`` (the only AdmissionReview version kubelab speaks); ``clientConfig``
holds exactly one of ``url`` (https, with a host, no user info, query or fragment) or ``service``;
rules follow Kubernetes' wildcard rules. Defaults: failurePolicy Fail, matchPolicy Equivalent,
empty selectors, timeoutSeconds 10, reinvocationPolicy Never, rule scope ``*``, service port 443.

Called through ``machinery.api.defaults`` and ``machinery.api.validation``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from machinery.api import names
from machinery.api.names import Errors
from machinery.api.validation_pod import label_selector
from machinery.errors import StatusCause

Obj = dict[str, Any]

OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
SCOPES = ("*", "Cluster", "Namespaced")
FAILURE_POLICIES = ("Fail", "Ignore")
MATCH_POLICIES = ("Equivalent", "Exact")
REINVOCATION_POLICIES = ("IfNeeded", "Never")
SIDE_EFFECTS = ("None", "NoneOnDryRun")
REVIEW_VERSIONS = ("v1",)
MAX_MATCH_CONDITIONS = 64
_URL_FORM = "; desired format: https://host[/path]"


def default_configuration(obj: Obj) -> None:
    """Kubernetes' v1 defaults for every webhook of a configuration (in place)."""
    mutating = obj.get("kind") == "MutatingWebhookConfiguration"
    for hook in obj.get("webhooks") or []:
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            rule.setdefault("scope", "*")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)


def _go_strings(values: list[str]) -> str:
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


def _invalid_list(errs: Errors, field: str, values: list[str], detail: str) -> None:
    errs.causes.append(StatusCause(field, f"Invalid value: {_go_strings(values)}: {detail}", "FieldValueInvalid"))


def _fully_qualified(errs: Errors, field: str, name: str) -> None:
    if not name:
        errs.required(field)
        return
    errs.check(field, name, names.dns1123_subdomain)
    if len(name.split(".")) < 3:
        errs.invalid(field, name, "should be a domain with at least three segments separated by dots")


def _url(errs: Errors, field: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        errs.required(field, f"url must be a valid URL: {exc}{_URL_FORM}")
        return
    if parts.scheme != "https":
        errs.invalid(field, parts.scheme, "'https' is the only allowed URL scheme" + _URL_FORM)
    if not host:
        errs.invalid(field, host or "", "host must be specified" + _URL_FORM)
    if parts.username is not None or parts.password is not None:
        errs.invalid(field, parts.netloc.rpartition("@")[0], "user information is not permitted in the URL")
    if parts.fragment:
        errs.invalid(field, parts.fragment, "fragments are not permitted in the URL")
    if parts.query:
        errs.invalid(field, parts.query, "query parameters are not permitted in the URL")


def _service_path(errs: Errors, field: str, path: str) -> None:
    if path in ("", "/"):
        return
    if path == "//":
        errs.invalid(field, path, "segment[0] may not be empty")
        return
    if not path.startswith("/"):
        errs.invalid(field, path, "must start with a '/'")
    steps = path[1:].removesuffix("/").split("/")
    for i, step in enumerate(steps):
        if not step:
            errs.invalid(field, path, f"segment[{i}] may not be empty")
            continue
        for failure in names.dns1123_subdomain(step):
            errs.invalid(field, path, f"segment[{i}]: {failure}")


def _client_config(errs: Errors, field: str, config: Obj | None) -> None:
    config = config or {}
    url, service = config.get("url"), config.get("service")
    if (url is None) == (service is None) or (service is not None and not isinstance(service, dict)):
        errs.required(field, "exactly one of url or service is required")
    elif url is not None:
        _url(errs, f"{field}.url", url)
    elif isinstance(service, dict):
        path = f"{field}.service"
        if not service.get("name"):
            errs.required(f"{path}.name", "service name is required")
        if not service.get("namespace"):
            errs.required(f"{path}.namespace", "service namespace is required")
        port = service.get("port", 443)
        if not 1 <= int(port) <= 65535:
            errs.invalid(f"{path}.port", port, "port is not valid: must be between 1 and 65535, inclusive")
        if service.get("path") is not None:
            _service_path(errs, f"{path}.path", service["path"])


def _wildcard_list(errs: Errors, field: str, values: list[str], what: str) -> None:
    if not values:
        errs.required(field)
        return
    if len(values) > 1 and "*" in values:
        _invalid_list(errs, field, values, f"if '*' is present, must not specify other {what}")


def _resources(errs: Errors, field: str, resources: list[str]) -> None:
    wildcard_sub: set[str] = set()
    wildcard_res: set[str] = set()
    double = single = plain = False
    for i, item in enumerate(resources):
        if not item:
            errs.required(f"{field}[{i}]")
            continue
        double = double or item == "*/*"
        single = single or item == "*"
        res, slash, sub = item.partition("/")
        if not slash:
            plain = plain or item != "*"
            continue
        if res in wildcard_sub:
            errs.invalid(f"{field}[{i}]", item, f"if '{res}/*' is present, must not specify {item}")
        if sub in wildcard_res:
            errs.invalid(f"{field}[{i}]", item, f"if '*/{sub}' is present, must not specify {item}")
        if sub == "*":
            wildcard_sub.add(res)
        if res == "*":
            wildcard_res.add(sub)
    if len(resources) > 1 and double:
        _invalid_list(errs, field, resources, "if '*/*' is present, must not specify other resources")
    if single and plain:
        _invalid_list(errs, field, resources, "if '*' is present, must not specify other resources without "
                                              "subresources")


def _rule(errs: Errors, field: str, rule: Obj) -> None:
    operations = list(rule.get("operations") or [])
    if not operations:
        errs.required(f"{field}.operations")
    elif len(operations) > 1 and "*" in operations:
        _invalid_list(errs, f"{field}.operations", operations, "if '*' is present, must not specify other operations")
    for i, op in enumerate(operations):
        errs.enum(f"{field}.operations[{i}]", op, OPERATIONS)
    _wildcard_list(errs, f"{field}.apiGroups", list(rule.get("apiGroups") or []), "API groups")
    versions = list(rule.get("apiVersions") or [])
    _wildcard_list(errs, f"{field}.apiVersions", versions, "API versions")
    for i, version in enumerate(versions):
        if not version:
            errs.required(f"{field}.apiVersions[{i}]")
    resources = list(rule.get("resources") or [])
    if not resources:
        errs.required(f"{field}.resources")
    else:
        _resources(errs, f"{field}.resources", resources)
    errs.enum(f"{field}.scope", rule.get("scope"), SCOPES)


def _review_versions(errs: Errors, field: str, versions: list[str]) -> None:
    if not versions:
        errs.required(field, "must specify one of " + ", ".join(REVIEW_VERSIONS))
        return
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            errs.duplicate(f"{field}[{i}]", version)
        seen.add(version)
    if not any(v in REVIEW_VERSIONS for v in versions):
        _invalid_list(errs, field, versions, "must include at least one of " + ", ".join(REVIEW_VERSIONS))


def _match_conditions(errs: Errors, field: str, conditions: list[Obj]) -> None:
    if len(conditions) > MAX_MATCH_CONDITIONS:
        errs.causes.append(StatusCause(field, f"Too many: {len(conditions)}: must have at most "
                                              f"{MAX_MATCH_CONDITIONS} items", "FieldValueTooMany"))
    seen: set[str] = set()
    for i, condition in enumerate(conditions):
        name = condition.get("name") or ""
        if not name:
            errs.required(f"{field}[{i}].name")
        else:
            errs.check(f"{field}[{i}].name", name, names.qualified_name)
            if name in seen:
                errs.duplicate(f"{field}[{i}].name", name)
            seen.add(name)
        expression = condition.get("expression") or ""
        if not expression.strip():
            errs.required(f"{field}[{i}].expression")
            continue
        import cel  # here, not at the top: loading the CEL engine costs ~0.1 s at start

        try:
            cel.compile(expression)
        except ValueError as exc:
            errs.invalid(f"{field}[{i}].expression", expression, f"compilation failed: {exc}")


def _webhook(errs: Errors, field: str, hook: Obj, *, mutating: bool) -> None:
    _fully_qualified(errs, f"{field}.name", hook.get("name") or "")
    for i, rule in enumerate(hook.get("rules") or []):
        _rule(errs, f"{field}.rules[{i}]", rule)
    errs.enum(f"{field}.failurePolicy", hook.get("failurePolicy"), FAILURE_POLICIES)
    errs.enum(f"{field}.matchPolicy", hook.get("matchPolicy"), MATCH_POLICIES)
    for selector in ("namespaceSelector", "objectSelector"):
        label_selector(errs, f"{field}.{selector}", hook.get(selector) or {})
    side_effects = hook.get("sideEffects")
    if side_effects is None:
        errs.required(f"{field}.sideEffects", "must specify one of " + ", ".join(SIDE_EFFECTS))
    else:
        errs.enum(f"{field}.sideEffects", side_effects, SIDE_EFFECTS)
    timeout = hook.get("timeoutSeconds")
    if timeout is not None and not 1 <= timeout <= 30:
        errs.invalid(f"{field}.timeoutSeconds", timeout, "the timeout value must be between 1 and 30 seconds")
    _review_versions(errs, f"{field}.admissionReviewVersions", list(hook.get("admissionReviewVersions") or []))
    _client_config(errs, f"{field}.clientConfig", hook.get("clientConfig"))
    if mutating:
        errs.enum(f"{field}.reinvocationPolicy", hook.get("reinvocationPolicy"), REINVOCATION_POLICIES)
    _match_conditions(errs, f"{field}.matchConditions", list(hook.get("matchConditions") or []))


def validate_configuration(errs: Errors, obj: Obj, old: Obj | None) -> None:
    """Kubernetes' validation of a Mutating/ValidatingWebhookConfiguration (``old`` unused: the
    same rules hold on create and update)."""
    mutating = obj.get("kind") == "MutatingWebhookConfiguration"
    seen: set[str] = set()
    for i, hook in enumerate(obj.get("webhooks") or []):
        field = f"webhooks[{i}]"
        _webhook(errs, field, hook, mutating=mutating)
        name = hook.get("name") or ""
        if name and name in seen:
            errs.duplicate(f"{field}.name", name)
        seen.add(name)
