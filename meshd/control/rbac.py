"""meshd's own identity and its least-privilege RBAC (istiod's ClusterRole, for what meshd does).

meshd authenticates to the apiserver as the service account ``istio-system/istiod`` (a client
certificate with that user name and the service-account groups, as istiod runs in Kubernetes);
:func:`rbac_objects` are the ClusterRole ``istiod-clusterrole-istio-system`` and its binding to
that service account. ``kubelab up`` applies them with the admin's credentials
(:func:`ensure_rbac`) before it starts meshd, since meshd cannot grant itself anything. meshd
reads Services' EndpointSlices and writes its own ``istiod`` Endpoints and EndpointSlice.
"""

from __future__ import annotations

from typing import Any

from machinery.client import ApiClient
from machinery.errors import AlreadyExistsError, NotFoundError
from machinery.resources import lookup_kind

__all__ = ["ISTIOD_GROUPS", "ISTIOD_USER", "ensure_rbac", "rbac_objects"]

ISTIOD_USER = "system:serviceaccount:istio-system:istiod"
ISTIOD_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:istio-system")
ROLE_NAME = "istiod-clusterrole-istio-system"

_READ = ["get", "list", "watch"]
_WRITE = ["get", "list", "watch", "create", "update", "patch"]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def rbac_objects() -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME, "labels": {"app": "istiod", "app.kubernetes.io/managed-by": "kubelab"}},
        "rules": [
            _rule([""], ["pods", "nodes"], _READ),
            _rule([""], ["namespaces", "services", "endpoints"], _WRITE),
            _rule(["discovery.k8s.io"], ["endpointslices"], _WRITE),
            _rule([""], ["configmaps"], [*_WRITE, "delete"]),
            _rule([""], ["events"], ["create", "update", "patch"]),
            _rule(["networking.istio.io", "security.istio.io"], ["*"], _READ),
            _rule(["networking.istio.io", "security.istio.io"], ["*/status"], ["get", "update", "patch"]),
            _rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], _WRITE),
            _rule(["admissionregistration.k8s.io"], ["mutatingwebhookconfigurations",
                                                     "validatingwebhookconfigurations"], _WRITE),
            _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": ROLE_NAME, "labels": {"app": "istiod", "app.kubernetes.io/managed-by": "kubelab"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"}],
    }
    return [role, binding]


async def ensure_rbac(client: ApiClient) -> None:
    """Create the role and binding, or put back their rules and subjects."""
    for desired in rbac_objects():
        resource = lookup_kind(desired["apiVersion"], desired["kind"])
        assert resource is not None
        name = desired["metadata"]["name"]
        try:
            current = await client.get(resource, name)
        except NotFoundError:
            try:
                await client.create(resource, desired)
            except AlreadyExistsError:
                pass
            continue
        fields = ("rules",) if desired["kind"] == "ClusterRole" else ("roleRef", "subjects")
        if any(current.get(f) != desired[f] for f in fields):
            await client.update(resource, {**current, **{f: desired[f] for f in fields}})
