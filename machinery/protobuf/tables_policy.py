"""Protobuf field tables for core/v1 ResourceQuota, LimitRange and PodTemplate.

kubectl >= 1.32 sends ``kubectl create quota`` (and other built-in kinds) as protobuf. Field numbers
and names are Kubernetes' own (api ``core/v1`` ``generated.proto``); ``keep=True`` marks fields
without ``omitempty``. Read by :mod:`machinery.protobuf.schema`.
"""

from __future__ import annotations

from machinery.protobuf.fields import MessageTable, msg, qmap, s, slist

POLICY_MESSAGES: dict[str, MessageTable] = {
    "ResourceQuota": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "ResourceQuotaSpec"),
                      3: msg("status", "ResourceQuotaStatus")},
    "ResourceQuotaSpec": {1: qmap("hard"), 2: slist("scopes"), 3: msg("scopeSelector", "ScopeSelector")},
    "ScopeSelector": {1: msg("matchExpressions", "ScopedResourceSelectorRequirement", repeated=True)},
    "ScopedResourceSelectorRequirement": {1: s("scopeName", keep=True), 2: s("operator", keep=True),
                                          3: slist("values")},
    "ResourceQuotaStatus": {1: qmap("hard"), 2: qmap("used")},
    "LimitRange": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "LimitRangeSpec")},
    "LimitRangeSpec": {1: msg("limits", "LimitRangeItem", repeated=True)},
    "LimitRangeItem": {1: s("type", keep=True), 2: qmap("max"), 3: qmap("min"), 4: qmap("default"),
                       5: qmap("defaultRequest"), 6: qmap("maxLimitRequestRatio")},
    "PodTemplate": {1: msg("metadata", "ObjectMeta"), 2: msg("template", "PodTemplateSpec")},
}
