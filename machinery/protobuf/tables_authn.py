"""Protobuf field tables for authentication.k8s.io (TokenRequest, TokenReview, SelfSubjectReview).

kubectl >= 1.32 sends ``kubectl create token`` and ``kubectl auth whoami`` bodies as protobuf.
Field numbers and names are Kubernetes' own (api ``authentication/v1`` ``generated.proto``);
``keep=True`` marks Go pointer or non-``omitempty`` fields. Read by :mod:`machinery.protobuf.schema`.
"""

from __future__ import annotations

from machinery.protobuf.fields import MessageTable, i, msg, s, slist, time

AUTHN_MESSAGES: dict[str, MessageTable] = {
    "TokenRequest": {
        1: msg("metadata", "ObjectMeta"),
        2: msg("spec", "TokenRequestSpec"),
        3: msg("status", "TokenRequestStatus"),
    },
    "TokenRequestSpec": {
        1: slist("audiences"),
        3: msg("boundObjectRef", "BoundObjectReference"),
        4: i("expirationSeconds", keep=True),
    },
    "BoundObjectReference": {1: s("kind"), 2: s("apiVersion"), 3: s("name"), 4: s("uid")},
    "TokenRequestStatus": {1: s("token", keep=True), 2: time("expirationTimestamp")},
    "TokenReview": {
        1: msg("metadata", "ObjectMeta"),
        2: msg("spec", "TokenReviewSpec"),
    },
    "TokenReviewSpec": {1: s("token"), 2: slist("audiences")},
    "SelfSubjectReview": {1: msg("metadata", "ObjectMeta")},
}
