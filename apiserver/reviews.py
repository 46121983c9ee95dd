"""The authentication reviews: SelfSubjectReview (``kubectl auth whoami``) and TokenReview.

Both are virtual resources (:mod:`apiserver.virtual`): answered from the request, never stored.

* SelfSubjectReview (``authentication.k8s.io`` v1, v1beta1, v1alpha1) returns the caller as the
  apiserver sees it after impersonation: ``status.userInfo`` (username, uid, groups, extra).
* TokenReview (``authentication.k8s.io/v1``) authenticates ``spec.token`` for ``spec.audiences``
  (default: the apiserver's) and answers ``status.authenticated``, ``status.user``,
  ``status.audiences`` (those the token is valid for) or ``status.error`` — what a workload
  (a mesh CA, a webhook) asks before trusting a token a pod presented.
"""

from __future__ import annotations

from typing import Any

from apiserver.authn import AUTHENTICATOR
from apiserver.tokens import TokenInvalid
from apiserver.virtual import VirtualCall
from machinery.errors import BadRequestError


def _metadata(call: VirtualCall) -> dict[str, Any]:
    meta = dict(call.body.get("metadata") or {})
    meta["creationTimestamp"] = None
    return meta


async def self_subject_review(call: VirtualCall) -> dict[str, Any]:
    return {"kind": "SelfSubjectReview", "apiVersion": call.api_version, "metadata": _metadata(call),
            "status": {"userInfo": call.user.to_api()}}


async def token_review(call: VirtualCall) -> dict[str, Any]:
    spec = call.body.get("spec") or {}
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise BadRequestError("token is required for TokenReview in authentication")
    wanted = spec.get("audiences") or []
    if not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted):
        raise BadRequestError("spec.audiences must be a list of strings")
    authenticator = call.request.app[AUTHENTICATOR]
    audiences = tuple(wanted) or authenticator.tokens.audiences
    status: dict[str, Any] = {"user": {}}
    try:
        user = await authenticator.authenticate_token(token, audiences)
    except TokenInvalid as exc:
        status["error"] = f"[invalid bearer token, {exc}]" if str(exc) != "invalid bearer token" else str(exc)
    else:
        claims = authenticator.tokens.verify(token, audiences)
        status.update(authenticated=True, user=user.to_api(),
                      audiences=[a for a in audiences if a in claims.audiences])
    return {"kind": "TokenReview", "apiVersion": call.api_version, "metadata": _metadata(call),
            "spec": spec, "status": status}
