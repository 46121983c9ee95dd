"""The access reviews of authorization.k8s.io/v1, answered by the apiserver's authorizer.

Virtual resources (:mod:`apiserver.virtual`), never stored:

* SelfSubjectAccessReview — "may I?" (``kubectl auth can-i VERB RESOURCE``); any authenticated
  user may ask (``system:basic-user``).
* SubjectAccessReview — "may this user?" (cluster-scoped; needs ``create`` on
  ``subjectaccessreviews``), for webhooks and proxies that delegate authorisation.
* LocalSubjectAccessReview — the same, limited to one namespace (``admin`` may ask it).
* SelfSubjectRulesReview — "what may I do in this namespace?" (``kubectl auth can-i --list``).

Each returns the request with ``status`` filled (``allowed``, ``denied``, ``reason``;
``resourceRules``/``nonResourceRules``/``incomplete`` for rules). Malformed specs are 422s in
Kubernetes' words.
"""

from __future__ import annotations

from typing import Any

from apiserver.authn import UserInfo
from apiserver.authz import AUTHORIZER, Attributes, Authorizer
from apiserver.rbac.authorizer import RbacAuthorizer
from apiserver.rbac.rules import PolicyRule
from apiserver.virtual import VirtualCall, VirtualResource
from machinery.errors import StatusCause, invalid

GROUP = "authorization.k8s.io"


def _attributes(call: VirtualCall, spec: dict[str, Any], *, local: bool = False) -> Attributes:
    kind = call.resource.kind
    resource: dict[str, Any] = spec.get("resourceAttributes") or {}
    non_resource: dict[str, Any] = spec.get("nonResourceAttributes") or {}
    if resource and non_resource:
        raise invalid(kind, "", [StatusCause("spec.resourceAttributes", "Invalid value: \"\": cannot be "
                                             "specified in combination with nonResourceAttributes",
                                             "FieldValueInvalid")], group=GROUP)
    if not resource and not non_resource:
        raise invalid(kind, "", [StatusCause("spec.resourceAttributes", "Required value: exactly one of "
                                             "nonResourceAttributes or resourceAttributes must be specified",
                                             "FieldValueRequired")], group=GROUP)
    if non_resource:
        if local:
            raise invalid(kind, "", [StatusCause("spec.nonResourceAttributes", "Invalid value: \"\": "
                                                 "disallowed on this kind of request", "FieldValueInvalid")],
                          group=GROUP)
        return Attributes(str(non_resource.get("verb") or ""), path=str(non_resource.get("path") or ""))
    namespace = str(resource.get("namespace") or "")
    if local:
        if namespace and namespace != call.namespace:
            raise invalid(kind, "", [StatusCause("spec.resourceAttributes.namespace",
                                                 f'Invalid value: "{namespace}": must match metadata.namespace',
                                                 "FieldValueInvalid")], group=GROUP)
        namespace = call.namespace or ""
        resource["namespace"] = namespace
    return Attributes(str(resource.get("verb") or ""), str(resource.get("resource") or ""),
                      api_group=str(resource.get("group") or ""), api_version=str(resource.get("version") or ""),
                      subresource=str(resource.get("subresource") or ""), namespace=namespace,
                      name=str(resource.get("name") or ""))


def _answer(call: VirtualCall, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    meta = dict(call.body.get("metadata") or {})
    meta["creationTimestamp"] = None
    if call.namespace and call.resource.namespaced:
        meta["namespace"] = call.namespace
    return {"kind": call.resource.kind, "apiVersion": call.api_version, "metadata": meta, "spec": spec,
            "status": status}


async def _review(call: VirtualCall, user: UserInfo, spec: dict[str, Any], *, local: bool = False) -> dict[str, Any]:
    attributes = _attributes(call, spec, local=local)
    authorizer: Authorizer = call.request.app[AUTHORIZER]
    decision = await authorizer.authorize(user, attributes)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return _answer(call, spec, status)


async def self_subject_access_review(call: VirtualCall) -> dict[str, Any]:
    spec = dict(call.body.get("spec") or {})
    return await _review(call, call.user, spec)


def _subject(call: VirtualCall, spec: dict[str, Any]) -> UserInfo:
    name, groups = str(spec.get("user") or ""), spec.get("groups") or []
    if not name and not groups:
        raise invalid(call.resource.kind, "", [StatusCause("spec.user", 'Invalid value: "": at least one of user '
                                                           "or group must be specified", "FieldValueInvalid")],
                      group=GROUP)
    extra = {str(k): tuple(v) for k, v in (spec.get("extra") or {}).items() if isinstance(v, list)}
    return UserInfo(name, tuple(str(g) for g in groups), uid=str(spec.get("uid") or ""), extra=extra)


async def subject_access_review(call: VirtualCall) -> dict[str, Any]:
    spec = dict(call.body.get("spec") or {})
    return await _review(call, _subject(call, spec), spec)


async def local_subject_access_review(call: VirtualCall) -> dict[str, Any]:
    spec = dict(call.body.get("spec") or {})
    if spec.get("resourceAttributes"):
        spec["resourceAttributes"] = dict(spec["resourceAttributes"])
    return await _review(call, _subject(call, spec), spec, local=True)


def _rules(authorizer: Authorizer, user: UserInfo, namespace: str) -> list[PolicyRule]:
    if isinstance(authorizer, RbacAuthorizer):
        return authorizer.rules_for(user, namespace)
    return [PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), non_resource_urls=("*",))]


async def self_subject_rules_review(call: VirtualCall) -> dict[str, Any]:
    spec = dict(call.body.get("spec") or {})
    namespace = str(spec.get("namespace") or "")
    if not namespace:
        raise invalid(call.resource.kind, "", [StatusCause("spec.namespace", "Required value", "FieldValueRequired")],
                      group=GROUP)
    resource_rules, non_resource_rules = [], []
    for rule in _rules(call.request.app[AUTHORIZER], call.user, namespace):
        if rule.non_resource_urls:
            non_resource_rules.append({"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)})
        else:
            out: dict[str, Any] = {"verbs": list(rule.verbs), "apiGroups": list(rule.api_groups),
                                   "resources": list(rule.resources)}
            if rule.resource_names:
                out["resourceNames"] = list(rule.resource_names)
            resource_rules.append(out)
    return _answer(call, spec, {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                                "incomplete": False})


VIRTUAL_RESOURCES: tuple[VirtualResource, ...] = (
    VirtualResource(GROUP, "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", self_subject_access_review),
    VirtualResource(GROUP, "v1", "SubjectAccessReview", "subjectaccessreviews", subject_access_review),
    VirtualResource(GROUP, "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", self_subject_rules_review),
    VirtualResource(GROUP, "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
                    local_subject_access_review, namespaced=True),
)
