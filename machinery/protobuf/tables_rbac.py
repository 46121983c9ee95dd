"""Protobuf field tables for rbac.authorization.k8s.io/v1 and the authorization.k8s.io/v1 reviews.

kubectl >= 1.32 sends ``kubectl create role``/``rolebinding`` … and ``kubectl auth can-i`` bodies
as protobuf. Field numbers and names are Kubernetes' own (api ``rbac/v1`` and ``authorization/v1``
``generated.proto``); ``keep=True`` marks fields without ``omitempty``. Read by
:mod:`machinery.protobuf.schema`.
"""

from __future__ import annotations

from machinery.protobuf.fields import MessageTable, b, msg, s, slist

RBAC_MESSAGES: dict[str, MessageTable] = {
    "PolicyRule": {1: slist("verbs"), 2: slist("apiGroups"), 3: slist("resources"), 4: slist("resourceNames"),
                   5: slist("nonResourceURLs")},
    "AggregationRule": {1: msg("clusterRoleSelectors", "LabelSelector", repeated=True)},
    "Role": {1: msg("metadata", "ObjectMeta"), 2: msg("rules", "PolicyRule", repeated=True)},
    "ClusterRole": {1: msg("metadata", "ObjectMeta"), 2: msg("rules", "PolicyRule", repeated=True),
                    3: msg("aggregationRule", "AggregationRule")},
    "Subject": {1: s("kind", keep=True), 2: s("apiGroup"), 3: s("name", keep=True), 4: s("namespace")},
    "RoleRef": {1: s("apiGroup", keep=True), 2: s("kind", keep=True), 3: s("name", keep=True)},
    "RoleBinding": {1: msg("metadata", "ObjectMeta"), 2: msg("subjects", "Subject", repeated=True),
                    3: msg("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: msg("metadata", "ObjectMeta"), 2: msg("subjects", "Subject", repeated=True),
                           3: msg("roleRef", "RoleRef")},
}

AUTHZ_MESSAGES: dict[str, MessageTable] = {
    "ResourceAttributes": {1: s("namespace"), 2: s("verb"), 3: s("group"), 4: s("version"), 5: s("resource"),
                           6: s("subresource"), 7: s("name")},
    "NonResourceAttributes": {1: s("path"), 2: s("verb")},
    "SelfSubjectAccessReviewSpec": {1: msg("resourceAttributes", "ResourceAttributes"),
                                    2: msg("nonResourceAttributes", "NonResourceAttributes")},
    "SubjectAccessReviewSpec": {1: msg("resourceAttributes", "ResourceAttributes"),
                                2: msg("nonResourceAttributes", "NonResourceAttributes"),
                                3: s("user"), 4: slist("groups"), 6: s("uid")},
    "SubjectAccessReviewStatus": {1: b("allowed", keep=True), 4: b("denied"), 2: s("reason"),
                                  3: s("evaluationError")},
    "SelfSubjectAccessReview": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "SelfSubjectAccessReviewSpec"),
                                3: msg("status", "SubjectAccessReviewStatus")},
    "SubjectAccessReview": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "SubjectAccessReviewSpec"),
                            3: msg("status", "SubjectAccessReviewStatus")},
    "SelfSubjectRulesReviewSpec": {1: s("namespace")},
    "SelfSubjectRulesReview": {1: msg("metadata", "ObjectMeta"), 2: msg("spec", "SelfSubjectRulesReviewSpec")},
}
