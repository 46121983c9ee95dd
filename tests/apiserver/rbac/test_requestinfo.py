"""Request attributes from method, path and query, as Kubernetes' RequestInfoFactory."""

from __future__ import annotations

import pytest

from apiserver.authz import Attributes
from apiserver.rbac.requestinfo import attributes_of


@pytest.mark.parametrize(("method", "path", "query", "want"), [
    pytest.param("GET", "/api/v1/namespaces/ns/pods", {}, Attributes("list", "pods", api_version="v1",
                 namespace="ns"), id="list"),
    pytest.param("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"},
                 Attributes("watch", "pods", api_version="v1", namespace="ns"), id="watch-query"),
    pytest.param("GET", "/api/v1/watch/namespaces/ns/pods", {},
                 Attributes("watch", "pods", api_version="v1", namespace="ns"), id="watch-prefix"),
    pytest.param("GET", "/api/v1/namespaces/ns/pods", {"fieldSelector": "metadata.name=p", "watch": "1"},
                 Attributes("watch", "pods", api_version="v1", namespace="ns", name="p"), id="watch-one"),
    pytest.param("GET", "/api/v1/pods", {}, Attributes("list", "pods", api_version="v1"), id="all-namespaces"),
    pytest.param("GET", "/api/v1/namespaces/ns/pods/p/log", {},
                 Attributes("get", "pods", api_version="v1", subresource="log", namespace="ns", name="p"), id="log"),
    pytest.param("POST", "/apis/apps/v1/namespaces/ns/deployments", {},
                 Attributes("create", "deployments", api_group="apps", api_version="v1", namespace="ns"),
                 id="create"),
    pytest.param("PUT", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {},
                 Attributes("update", "deployments", api_group="apps", api_version="v1", subresource="scale",
                            namespace="ns", name="d"), id="scale"),
    pytest.param("DELETE", "/api/v1/namespaces/ns/pods", {},
                 Attributes("deletecollection", "pods", api_version="v1", namespace="ns"), id="deletecollection"),
    pytest.param("DELETE", "/api/v1/namespaces/ns/pods/p", {},
                 Attributes("delete", "pods", api_version="v1", namespace="ns", name="p"), id="delete"),
    pytest.param("PATCH", "/api/v1/nodes/n/status", {},
                 Attributes("patch", "nodes", api_version="v1", subresource="status", name="n"), id="node-status"),
    pytest.param("GET", "/api/v1/namespaces/ns", {},
                 Attributes("get", "namespaces", api_version="v1", namespace="ns", name="ns"), id="namespace"),
    pytest.param("PUT", "/api/v1/namespaces/ns/finalize", {},
                 Attributes("update", "namespaces", api_version="v1", subresource="finalize", namespace="ns",
                            name="ns"), id="namespace-finalize"),
    pytest.param("GET", "/api", {}, Attributes("get", path="/api"), id="discovery"),
    pytest.param("GET", "/apis/apps/v1", {}, Attributes("get", path="/apis/apps/v1"), id="group-discovery"),
    pytest.param("GET", "/healthz", {}, Attributes("get", path="/healthz"), id="healthz"),
    pytest.param("POST", "/metrics", {}, Attributes("post", path="/metrics"), id="non-resource-post"),
])
def test_attributes(method: str, path: str, query: dict[str, str], want: Attributes) -> None:
    got = attributes_of(method, path, query)
    if not want.resource:
        assert (got.verb, got.resource, got.path) == (want.verb, "", want.path)
    else:
        assert got == Attributes(want.verb, want.resource, want.api_group, want.api_version, want.subresource,
                                 want.namespace, want.name, path)
