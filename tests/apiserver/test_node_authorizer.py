"""The Node authorizer: a kubelet reads only the secrets, configmaps and claims of the pods bound
to its node and requests tokens only for their service accounts; other callers and other resources
are left to RBAC. Decisions on a graph fed by hand, then through an embedded apiserver where nodes
are played by the admin impersonating ``system:node:<name>`` in ``system:nodes``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apiserver.authn import UserInfo
from apiserver.authz import Attributes
from apiserver.nodeauthz import NodeAuthorizer, NodeGraph, pod_refs
from tests.apiserver.conftest import Api

NODE_A = UserInfo("system:node:node-a", ("system:nodes", "system:authenticated"))
NODE_B = UserInfo("system:node:node-b", ("system:nodes", "system:authenticated"))


def pod(name: str, node: str = "node-a", namespace: str = "lab", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox"}], **spec}
    if node:
        body["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": body}


RICH = pod(
    "web", serviceAccountName="runner", imagePullSecrets=[{"name": "pull"}],
    volumes=[{"name": "cert", "secret": {"secretName": "tls"}},
             {"name": "conf", "configMap": {"name": "settings"}},
             {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
             {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
             {"name": "api", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}},
                                                       {"configMap": {"name": "kube-root-ca.crt"}},
                                                       {"secret": {"name": "bundle"}}]}}],
    initContainers=[{"name": "init", "image": "busybox", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
    containers=[{"name": "app", "image": "busybox",
                 "envFrom": [{"configMapRef": {"name": "app-env"}}],
                 "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "password", "key": "p"}}},
                         {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "color", "key": "c"}}},
                         {"name": "C", "value": "plain"}]}])


def authorizer(*pods: dict[str, Any]) -> NodeAuthorizer:
    graph = NodeGraph()
    for p in pods:
        graph.apply(p)
    return NodeAuthorizer(graph)


def test_pod_references_every_kind_of_use() -> None:
    refs = pod_refs(RICH)
    assert refs is not None and refs.node == "node-a"
    assert refs.refs == {
        ("secrets", "lab", n) for n in ("tls", "bundle", "init-env", "password", "pull")
    } | {("configmaps", "lab", n) for n in ("settings", "kube-root-ca.crt", "app-env", "color")} | {
        ("persistentvolumeclaims", "lab", "data"), ("persistentvolumeclaims", "lab", "web-scratch"),
        ("serviceaccounts", "lab", "runner")}


def test_unbound_pod_relates_to_no_node() -> None:
    assert pod_refs(pod("pending", node="")) is None


@pytest.mark.parametrize(("user", "attributes", "allowed", "reason"), [
    pytest.param(NODE_A, Attributes("get", "secrets", namespace="lab", name="tls"), True, "", id="own-secret"),
    pytest.param(NODE_A, Attributes("watch", "configmaps", namespace="lab", name="kube-root-ca.crt"), True, "",
                 id="watch-one-configmap"),
    pytest.param(NODE_B, Attributes("get", "secrets", namespace="lab", name="tls"), False,
                 "no relationship found between node 'node-b' and this object", id="other-node-secret"),
    pytest.param(NODE_A, Attributes("get", "secrets", namespace="other", name="tls"), False,
                 "no relationship found between node 'node-a' and this object", id="same-name-other-namespace"),
    pytest.param(NODE_A, Attributes("list", "secrets", namespace="lab"), False, "No Object name found",
                 id="list-all-secrets"),
    pytest.param(NODE_A, Attributes("list", "secrets"), False, "can only read namespaced object of this type",
                 id="list-secrets-cluster-wide"),
    pytest.param(NODE_A, Attributes("update", "configmaps", namespace="lab", name="settings"), False,
                 "can only read resources of this type", id="write-configmap"),
    pytest.param(NODE_A, Attributes("get", "persistentvolumeclaims", namespace="lab", name="web-scratch"), True, "",
                 id="ephemeral-claim"),
    pytest.param(NODE_A, Attributes("patch", "persistentvolumeclaims", subresource="status", namespace="lab",
                                    name="data"), True, "", id="claim-status"),
    pytest.param(NODE_A, Attributes("list", "persistentvolumeclaims", namespace="lab"), False,
                 "can only get individual resources of this type", id="list-claims"),
    pytest.param(NODE_A, Attributes("create", "serviceaccounts", subresource="token", namespace="lab",
                                    name="runner"), True, "", id="token-for-own-pods-account"),
    pytest.param(NODE_B, Attributes("create", "serviceaccounts", subresource="token", namespace="lab",
                                    name="runner"), False,
                 "no relationship found between node 'node-b' and this object", id="token-for-other-nodes-account"),
    pytest.param(NODE_A, Attributes("get", "serviceaccounts", namespace="lab", name="runner"), False,
                 "can only create tokens for individual service accounts", id="get-account"),
    pytest.param(UserInfo("system:node:", ("system:nodes",)), Attributes("get", "secrets", namespace="lab",
                                                                         name="tls"), False,
                 'unknown node for user "system:node:"', id="nameless-node"),
])
def test_node_decisions(user: UserInfo, attributes: Attributes, allowed: bool, reason: str) -> None:
    decision = authorizer(RICH).decide(user, attributes)
    assert decision is not None
    assert (decision.allowed, decision.reason) == (allowed, reason)


@pytest.mark.parametrize(("user", "attributes"), [
    pytest.param(UserInfo("alice", ("system:authenticated",)), Attributes("get", "secrets", namespace="lab",
                                                                          name="other"), id="not-a-node"),
    pytest.param(UserInfo("system:node:node-a", ("system:authenticated",)), Attributes(
        "get", "secrets", namespace="lab", name="other"), id="node-name-outside-the-nodes-group"),
    pytest.param(NODE_A, Attributes("list", "pods"), id="pods-left-to-rbac"),
    pytest.param(NODE_A, Attributes("update", "nodes", subresource="status", name="node-a"), id="node-status"),
    pytest.param(NODE_A, Attributes("get", "secrets", api_group="example.com", namespace="lab", name="x"),
                 id="custom-secrets"),
    pytest.param(NODE_A, Attributes("get", path="/healthz"), id="non-resource"),
])
def test_no_opinion_leaves_the_request_to_rbac(user: UserInfo, attributes: Attributes) -> None:
    assert authorizer(RICH).decide(user, attributes) is None


def test_graph_follows_pods_leaving_and_shared_references() -> None:
    first, second = pod("one", volumes=[{"name": "s", "secret": {"secretName": "shared"}}]), \
        pod("two", volumes=[{"name": "s", "secret": {"secretName": "shared"}}])
    graph = NodeGraph()
    for p in (first, second):
        graph.apply(p)
    assert graph.related("node-a", "secrets", "lab", "shared")
    graph.apply(first, deleted=True)
    assert graph.related("node-a", "secrets", "lab", "shared")
    graph.apply(second, deleted=True)
    assert not graph.related("node-a", "secrets", "lab", "shared") and graph.edges == {}


def test_graph_follows_a_pod_bound_later() -> None:
    graph = NodeGraph()
    pending = pod("late", node="", volumes=[{"name": "s", "secret": {"secretName": "late"}}])
    graph.apply(pending)
    assert not graph.related("node-a", "secrets", "lab", "late")
    graph.apply({**pending, "spec": {**pending["spec"], "nodeName": "node-b"}})
    assert graph.related("node-b", "secrets", "lab", "late")
    assert not graph.related("node-a", "secrets", "lab", "late")


# --- through the apiserver ----------------------------------------------------------------------------------


def as_node(node: str) -> dict[str, str]:
    return {"Impersonate-User": f"system:node:{node}", "Impersonate-Group": "system:nodes"}


async def post(api: Api, path: str, body: dict[str, Any]) -> Any:
    status, obj = await api.request("POST", path, body)
    assert status == 201, obj
    return obj


async def until_status(api: Api, path: str, headers: dict[str, str], expected: int) -> Any:
    """The answer to GET ``path`` once it has ``expected`` status (the graph follows the watch cache)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        status, obj = await api.request("GET", path, headers=headers)
        if status == expected or asyncio.get_running_loop().time() > deadline:
            assert status == expected, obj
            return obj
        await asyncio.sleep(0.05)


async def test_a_node_reads_only_the_secrets_of_its_own_pods(api: Api) -> None:
    await post(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}})
    for account in ("runner", "default"):
        await post(api, "/api/v1/namespaces/lab/serviceaccounts",
                   {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}})
    for name in ("for-a", "for-b"):
        await post(api, "/api/v1/namespaces/lab/secrets",
                   {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"k": "dg=="}})
    await post(api, "/api/v1/namespaces/lab/pods", pod(
        "on-a", "node-a", serviceAccountName="runner", volumes=[{"name": "s", "secret": {"secretName": "for-a"}}]))
    on_b = await post(api, "/api/v1/namespaces/lab/pods", pod(
        "on-b", "node-b", volumes=[{"name": "s", "secret": {"secretName": "for-b"}}]))

    secret = await until_status(api, "/api/v1/namespaces/lab/secrets/for-a", as_node("node-a"), 200)
    assert secret["data"] == {"k": "dg=="}
    denied = await until_status(api, "/api/v1/namespaces/lab/secrets/for-b", as_node("node-a"), 403)
    assert denied["reason"] == "Forbidden"
    assert denied["message"] == (
        'secrets "for-b" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" '
        "in the namespace \"lab\": no relationship found between node 'node-a' and this object")
    await until_status(api, "/api/v1/namespaces/lab/secrets/for-b", as_node("node-b"), 200)
    listed = await until_status(api, "/api/v1/namespaces/lab/secrets", as_node("node-a"), 403)
    assert listed["message"].endswith(": No Object name found")
    await until_status(api, "/api/v1/namespaces/lab/configmaps/kube-root-ca.crt", as_node("node-c"), 403)

    # Tokens: only for the accounts of the node's pods, bound to such a pod.
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "on-b",
                                           "uid": on_b["metadata"]["uid"]}}}
    status, answer = await api.request("POST", "/api/v1/namespaces/lab/serviceaccounts/default/token", request,
                                       headers=as_node("node-b"))
    assert status == 201 and answer["status"]["token"], answer
    status, answer = await api.request("POST", "/api/v1/namespaces/lab/serviceaccounts/runner/token", request,
                                       headers=as_node("node-b"))
    assert status == 403 and "no relationship found between node 'node-b'" in answer["message"], answer

    # Once the pod is gone, so is its node's access.
    status, _ = await api.request("DELETE", "/api/v1/namespaces/lab/pods/on-a?gracePeriodSeconds=0")
    assert status == 200
    await until_status(api, "/api/v1/namespaces/lab/secrets/for-a", as_node("node-a"), 403)
