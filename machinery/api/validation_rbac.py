"""Kubernetes validation and defaults of the RBAC kinds (``pkg/apis/rbac/validation``).

Role and binding names are path segments (``system:node`` is valid); rules need verbs, and
resource rules need API groups and resources, non-resource rules neither (and only in
ClusterRoles); a binding's ``roleRef`` names a Role or ClusterRole of rbac.authorization.k8s.io
and never changes; subjects are Users, Groups (apiGroup rbac.authorization.k8s.io) or
ServiceAccounts (apiGroup "", namespace required in a ClusterRoleBinding). Called through
``machinery.api.validation.CHECKS`` and ``machinery.api.defaults.DEFAULTERS``.
"""

from typing import Any

from machinery.api import names
from machinery.api.names import Errors
from machinery.api.validation_pod import label_selector
from machinery.errors import StatusCause

Obj = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def path_segment_name(value: str) -> list[str]:
    """``path.IsValidPathSegmentName``: the rule for RBAC object names."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def default_subjects(obj: Obj) -> None:
    """A subject's apiGroup defaults to "" for a ServiceAccount, to rbac.authorization.k8s.io otherwise."""
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup"):
            kind = subject.get("kind")
            if kind == "ServiceAccount":
                subject["apiGroup"] = ""
            elif kind in ("User", "Group"):
                subject["apiGroup"] = RBAC_GROUP


def _rules(errs: Errors, rules: list[Obj], namespaced: bool) -> None:
    for i, rule in enumerate(rules):
        path = f"rules[{i}]"
        if not rule.get("verbs"):
            errs.required(f"{path}.verbs", "verbs must contain at least one value")
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                errs.invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
            if rule.get("apiGroups") or rule.get("resources"):
                errs.invalid(f"{path}.nonResourceURLs", urls,
                             "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not rule.get("apiGroups"):
            errs.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
        if not rule.get("resources"):
            errs.required(f"{path}.resources", "resource rules must supply at least one resource")


def role(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _rules(errs, obj.get("rules") or [], namespaced=True)


def cluster_role(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _rules(errs, obj.get("rules") or [], namespaced=False)
    aggregation = obj.get("aggregationRule")
    if aggregation is not None:
        selectors = aggregation.get("clusterRoleSelectors") or []
        if not selectors:
            errs.required("aggregationRule.clusterRoleSelectors",
                          "at least one clusterRoleSelector required if aggregationRule is non-nil")
        for i, selector in enumerate(selectors):
            label_selector(errs, f"aggregationRule.clusterRoleSelectors[{i}]", selector)


def _subjects(errs: Errors, subjects: list[Obj], namespaced: bool) -> None:
    for i, subject in enumerate(subjects):
        path = f"subjects[{i}]"
        name, kind, group = subject.get("name") or "", subject.get("kind") or "", subject.get("apiGroup") or ""
        if not name:
            errs.required(f"{path}.name")
        if kind == "ServiceAccount":
            if name:
                errs.check(f"{path}.name", name, names.dns1123_subdomain)
            if group:
                errs.not_supported(f"{path}.apiGroup", group, ("",))
            if not namespaced and not subject.get("namespace"):
                errs.required(f"{path}.namespace")
        elif kind in ("User", "Group"):
            if group != RBAC_GROUP:
                errs.not_supported(f"{path}.apiGroup", group, (RBAC_GROUP,))
        else:
            errs.not_supported(f"{path}.kind", kind, SUBJECT_KINDS)


def _binding(errs: Errors, obj: Obj, old: Obj | None, kinds: tuple[str, ...], namespaced: bool) -> None:
    ref = obj.get("roleRef") or {}
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (RBAC_GROUP,))
    if ref.get("kind") not in kinds:
        errs.not_supported("roleRef.kind", ref.get("kind") or "", kinds)
    if not ref.get("name"):
        errs.required("roleRef.name")
    else:
        errs.check("roleRef.name", ref["name"], path_segment_name)
    _subjects(errs, obj.get("subjects") or [], namespaced)
    if old is not None and (old.get("roleRef") or {}) != ref:
        shown = (f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup") or ""}", Kind:"{ref.get("kind") or ""}", '
                 f'Name:"{ref.get("name") or ""}"}}')
        errs.causes.append(StatusCause("roleRef", f"Invalid value: {shown}: cannot change roleRef",
                                       "FieldValueInvalid"))


def role_binding(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _binding(errs, obj, old, ("Role", "ClusterRole"), namespaced=True)


def cluster_role_binding(errs: Errors, obj: Obj, old: Obj | None) -> None:
    _binding(errs, obj, old, ("ClusterRole",), namespaced=False)


RBAC_CHECKS = {"Role": role, "ClusterRole": cluster_role, "RoleBinding": role_binding,
               "ClusterRoleBinding": cluster_role_binding}
RBAC_NAME_RULES = {kind: path_segment_name for kind in RBAC_CHECKS}
