"""Discovery lists the subresources kube-apiserver v1.32 lists for the resources served here.

The expected table is kube-apiserver's own ``/api/v1`` and ``/apis/<group>/<version>`` answers,
restricted to the resources this server serves: name, kind, the group/version a subresource's
kind lives in when it differs, and the verbs (connect subresources such as ``proxy`` list the
verbs of the HTTP methods they accept).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.apiserver.conftest import Api

STATUS = ("get", "patch", "update")
CONNECT = ("create", "get")
PROXY = ("create", "delete", "get", "patch", "update")
SCALE = ("autoscaling", "v1", "Scale", STATUS)

# group/version -> "resource/subresource" -> (group, version, kind, verbs); "" group and version: the
# resource's own.
UPSTREAM: dict[str, dict[str, tuple[str, str, str, tuple[str, ...]]]] = {
    "v1": {
        "namespaces/finalize": ("", "", "Namespace", ("update",)),
        "namespaces/status": ("", "", "Namespace", STATUS),
        "nodes/proxy": ("", "", "NodeProxyOptions", PROXY),
        "nodes/status": ("", "", "Node", STATUS),
        "persistentvolumeclaims/status": ("", "", "PersistentVolumeClaim", STATUS),
        "persistentvolumes/status": ("", "", "PersistentVolume", STATUS),
        "pods/attach": ("", "", "PodAttachOptions", CONNECT),
        "pods/binding": ("", "", "Binding", ("create",)),
        "pods/ephemeralcontainers": ("", "", "Pod", STATUS),
        "pods/eviction": ("policy", "v1", "Eviction", ("create",)),
        "pods/exec": ("", "", "PodExecOptions", CONNECT),
        "pods/log": ("", "", "Pod", ("get",)),
        "pods/portforward": ("", "", "PodPortForwardOptions", CONNECT),
        "pods/proxy": ("", "", "PodProxyOptions", PROXY),
        "pods/status": ("", "", "Pod", STATUS),
        "replicationcontrollers/scale": SCALE,
        "replicationcontrollers/status": ("", "", "ReplicationController", STATUS),
        "resourcequotas/status": ("", "", "ResourceQuota", STATUS),
        "serviceaccounts/token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
        "services/proxy": ("", "", "ServiceProxyOptions", PROXY),
        "services/status": ("", "", "Service", STATUS),
    },
    "apps/v1": {
        "daemonsets/status": ("", "", "DaemonSet", STATUS),
        "deployments/scale": SCALE,
        "deployments/status": ("", "", "Deployment", STATUS),
        "replicasets/scale": SCALE,
        "replicasets/status": ("", "", "ReplicaSet", STATUS),
        "statefulsets/scale": SCALE,
        "statefulsets/status": ("", "", "StatefulSet", STATUS),
    },
    "batch/v1": {
        "cronjobs/status": ("", "", "CronJob", STATUS),
        "jobs/status": ("", "", "Job", STATUS),
    },
    "autoscaling/v1": {"horizontalpodautoscalers/status": ("", "", "HorizontalPodAutoscaler", STATUS)},
    "autoscaling/v2": {"horizontalpodautoscalers/status": ("", "", "HorizontalPodAutoscaler", STATUS)},
    "networking.k8s.io/v1": {"ingresses/status": ("", "", "Ingress", STATUS)},
    "storage.k8s.io/v1": {},
    "discovery.k8s.io/v1": {},
    "coordination.k8s.io/v1": {},
    "rbac.authorization.k8s.io/v1": {},
    "apiextensions.k8s.io/v1": {
        "customresourcedefinitions/status": ("", "", "CustomResourceDefinition", STATUS),
    },
}
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _path(gv: str) -> str:
    return "/api/v1" if gv == "v1" else f"/apis/{gv}"


@pytest.mark.parametrize("gv", list(UPSTREAM))
async def test_resource_list_names_the_upstream_subresources(api: Api, gv: str) -> None:
    status, body = await api.request("GET", _path(gv))
    assert status == 200, body
    served = {r["name"]: r for r in body["resources"] if "/" in r["name"]}
    assert set(served) == set(UPSTREAM[gv])
    for name, (group, version, kind, verbs) in UPSTREAM[gv].items():
        entry = served[name]
        assert (entry["kind"], entry["verbs"], entry["singularName"]) == (kind, list(verbs), ""), name
        assert (entry.get("group", ""), entry.get("version", "")) == (group, version), name
        parent = next(r for r in body["resources"] if r["name"] == name.split("/")[0])
        assert entry["namespaced"] == parent["namespaced"], name


async def test_aggregated_discovery_names_the_same_subresources(api: Api) -> None:
    documents: list[Any] = []
    for path in ("/api", "/apis"):
        async with await api.response("GET", path, headers={"Accept": AGGREGATED}) as resp:
            assert resp.status == 200
            documents.append(await resp.json(content_type=None))
    found: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {}
    for document in documents:
        for item in document["items"]:
            group = item["metadata"]["name"]
            for version in item["versions"]:
                gv = f"{group}/{version['version']}" if group else version["version"]
                found[gv] = {f"{r['resource']}/{s['subresource']}": (s["responseKind"]["kind"], tuple(s["verbs"]))
                             for r in version["resources"] for s in r.get("subresources") or []}
    for gv, expected in UPSTREAM.items():
        assert found[gv] == {name: (kind, verbs) for name, (_g, _v, kind, verbs) in expected.items()}, gv


@pytest.mark.parametrize("path", [
    pytest.param("/api/v1/namespaces/default/pods/missing/proxy/", id="pod"),
    pytest.param("/api/v1/namespaces/default/services/missing:80/proxy/index.html", id="service"),
    pytest.param("/api/v1/nodes/missing/proxy/healthz", id="node"),
])
async def test_proxy_subresources_are_routed(api: Api, path: str) -> None:
    status, body = await api.request("GET", path)
    assert status == 404
    assert body["reason"] == "NotFound" and "missing" in body["message"], body


async def test_proxy_is_not_a_subresource_of_other_resources(api: Api) -> None:
    status, body = await api.request("GET", "/api/v1/namespaces/default/configmaps/x/proxy/")
    assert status == 404
    assert body["message"] == "the server could not find the requested resource"
