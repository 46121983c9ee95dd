"""Every kind served with a ``status`` subresource follows Kubernetes' status rules.

A create and an update of the main resource ignore the ``status`` they carry (the stored one is
kept); an update through ``/status`` changes only the status (the ``spec`` it carries is
ignored). Kinds that track ``metadata.generation`` start at 1 and move on spec changes only.
The table covers every resource that discovery lists with a ``status`` subresource, so a kind
added to discovery without a row here fails :func:`test_the_table_covers_every_status_subresource`.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.apiserver.conftest import Api

Obj = dict[str, Any]
NS = "default"
_TEMPLATE = {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
_SELECTOR = {"matchLabels": {"app": "s"}}
_RULES = [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
    "service": {"name": "web", "port": {"number": 80}}}}]}}]
_HPA_V2 = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1,
           "maxReplicas": 3}
_PV_SPEC = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/s"}}
_PVC_SPEC = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
             "storageClassName": "manual"}
_JOB_SPEC = {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}


class Case:
    """One kind: where it lives, a valid body, a status the test sets, and a spec edit."""

    def __init__(self, api_path: str, plural: str, namespaced: bool, body: Obj, status: Obj,
                 spec_edit: tuple[str, Any], *, create_keeps_status: bool = False) -> None:
        self.create_keeps_status = create_keeps_status
        """A Node is registered with its status (kubelets send capacity and addresses at once)."""
        self.api_path = api_path
        self.plural = plural
        self.namespaced = namespaced
        self.body = body
        self.status = status
        self.spec_edit = spec_edit

    def collection(self) -> str:
        return f"{self.api_path}/namespaces/{NS}/{self.plural}" if self.namespaced else f"{self.api_path}/{self.plural}"

    def key(self) -> str:
        gv = self.api_path.removeprefix("/apis/").removeprefix("/api/")
        return f"{gv}/{self.plural}"


CASES = [
    Case("/api/v1", "pods", True, {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
         {"phase": "Running"}, ("activeDeadlineSeconds", 30)),
    Case("/api/v1", "services", True, {"spec": {"ports": [{"port": 80}]}},
         {"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}]}}, ("sessionAffinity", "ClientIP")),
    Case("/api/v1", "nodes", False, {"spec": {}}, {"capacity": {"cpu": "2"}}, ("unschedulable", True),
         create_keeps_status=True),
    Case("/api/v1", "namespaces", False, {}, {"phase": "Terminating"}, ("finalizers", ["kubernetes"])),
    Case("/api/v1", "replicationcontrollers", True,
         {"spec": {"replicas": 1, "selector": {"app": "s"}, "template": _TEMPLATE}},
         {"replicas": 0, "observedGeneration": 5}, ("replicas", 2)),
    Case("/api/v1", "persistentvolumes", False, {"spec": _PV_SPEC}, {"phase": "Available"},
         ("persistentVolumeReclaimPolicy", "Delete")),
    Case("/api/v1", "persistentvolumeclaims", True, {"spec": _PVC_SPEC}, {"phase": "Bound"},
         ("volumeName", "pv-s")),
    Case("/api/v1", "resourcequotas", True, {"spec": {"hard": {"pods": "2"}}},
         {"hard": {"pods": "2"}, "used": {"pods": "1"}}, ("hard", {"pods": "5"})),
    Case("/apis/apps/v1", "deployments", True, {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
         {"observedGeneration": 5}, ("replicas", 2)),
    Case("/apis/apps/v1", "replicasets", True, {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
         {"replicas": 0, "observedGeneration": 5}, ("replicas", 2)),
    Case("/apis/apps/v1", "statefulsets", True,
         {"spec": {"selector": _SELECTOR, "template": _TEMPLATE, "serviceName": "s"}},
         {"replicas": 0, "observedGeneration": 5}, ("replicas", 2)),
    Case("/apis/apps/v1", "daemonsets", True, {"spec": {"selector": _SELECTOR, "template": _TEMPLATE}},
         {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0,
          "observedGeneration": 5}, ("minReadySeconds", 5)),
    Case("/apis/batch/v1", "jobs", True, {"spec": _JOB_SPEC}, {"active": 1}, ("activeDeadlineSeconds", 30)),
    Case("/apis/batch/v1", "cronjobs", True,
         {"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": _JOB_SPEC}}},
         {"lastScheduleTime": "2026-01-01T00:00:00Z"}, ("suspend", True)),
    Case("/apis/autoscaling/v2", "horizontalpodautoscalers", True, {"spec": _HPA_V2},
         {"currentReplicas": 2, "desiredReplicas": 2}, ("maxReplicas", 5)),
    Case("/apis/autoscaling/v1", "horizontalpodautoscalers", True,
         {"spec": {"scaleTargetRef": _HPA_V2["scaleTargetRef"], "maxReplicas": 3}},
         {"currentReplicas": 2, "desiredReplicas": 2}, ("maxReplicas", 5)),
    Case("/apis/networking.k8s.io/v1", "ingresses", True, {"spec": {"rules": _RULES}},
         {"loadBalancer": {"ingress": [{"ip": "127.0.0.3"}]}}, ("ingressClassName", "other")),
]
# Kinds without a status subresource whose generation Kubernetes tracks all the same.
GENERATION_ONLY = [
    Case("/apis/networking.k8s.io/v1", "networkpolicies", True, {"spec": {"podSelector": {}}}, {},
         ("policyTypes", ["Ingress", "Egress"])),
    Case("/apis/networking.k8s.io/v1", "ingressclasses", False, {"spec": {"controller": "example.com/a"}}, {},
         ("parameters", {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"})),
]
# Kinds whose own registry and controller are tested elsewhere: a CRD's status is written by the
# apiserver's naming controller while the test would run.
NOT_IN_TABLE = {"apiextensions.k8s.io/v1/customresourcedefinitions"}
GENERATION_KINDS = {"pods", "replicationcontrollers", "deployments", "replicasets", "statefulsets", "daemonsets",
                    "jobs", "cronjobs", "ingresses", "networkpolicies", "ingressclasses"}


async def _create(api: Api, case: Case, name: str) -> Obj:
    body = copy.deepcopy(case.body)
    body["metadata"] = {"name": name, **body.get("metadata", {})}
    if not case.create_keeps_status:
        body["status"] = copy.deepcopy(case.status)
    status, created = await api.request("POST", case.collection(), body)
    assert status == 201, created
    return created  # type: ignore[no-any-return]


def _has(whole: Obj | None, part: Obj) -> bool:
    """Whether ``whole`` carries every value of ``part``."""
    return all((whole or {}).get(k) == v for k, v in part.items())


async def test_the_table_covers_every_status_subresource(api: Api) -> None:
    served: set[str] = set()
    for path in ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}" for g in
                               (await api.request("GET", "/apis"))[1]["groups"]]:
        _, listing = await api.request("GET", path)
        served.update(f"{listing['groupVersion']}/{r['name'].split('/')[0]}" for r in listing["resources"]
                      if r["name"].endswith("/status"))
    _, v1 = await api.request("GET", "/apis/autoscaling/v1")
    served.update(f"autoscaling/v1/{r['name'].split('/')[0]}" for r in v1["resources"] if r["name"].endswith("/status"))
    assert served - NOT_IN_TABLE == {case.key() for case in CASES}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.key()) for c in CASES])
async def test_main_resource_ignores_status_and_status_ignores_spec(api: Api, case: Case) -> None:
    created = await _create(api, case, "s")
    assert not _has(created.get("status"), case.status), created.get("status")
    item = f"{case.collection()}/s"
    field, value = case.spec_edit

    # An update of the main resource keeps the stored status.
    sent = dict(copy.deepcopy(created), status=case.status)
    status, updated = await api.request("PUT", item, sent)
    assert status == 200, updated
    assert updated.get("status") == created.get("status")

    # /status takes the status and keeps the stored spec.
    sent = copy.deepcopy(updated)
    sent["status"] = case.status
    sent.setdefault("spec", {})[field] = value
    status, after = await api.request("PUT", f"{item}/status", sent)
    assert status == 200, after
    assert _has(after["status"], case.status), after["status"]
    assert (after.get("spec") or {}).get(field) == (updated.get("spec") or {}).get(field)
    assert after["metadata"].get("generation") == updated["metadata"].get("generation")


async def test_a_node_is_registered_with_its_status(api: Api) -> None:
    body = {"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "2"}}}
    status, created = await api.request("POST", "/api/v1/nodes", body)
    assert status == 201, created
    assert created["status"]["capacity"] == {"cpu": "2"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.key()) for c in CASES + GENERATION_ONLY])
async def test_generation_starts_at_one_and_moves_with_spec_only(api: Api, case: Case) -> None:
    created = await _create(api, case, "g")
    tracked = case.plural in GENERATION_KINDS
    assert created["metadata"].get("generation") == (1 if tracked else None)
    item = f"{case.collection()}/g"
    status, relabelled = await api.request("PATCH", item, {"metadata": {"labels": {"x": "y"}}},
                                           content_type="application/merge-patch+json")
    assert status == 200, relabelled
    assert relabelled["metadata"].get("generation") == created["metadata"].get("generation")
    field, value = case.spec_edit
    status, changed = await api.request("PATCH", item, {"spec": {field: value}},
                                        content_type="application/merge-patch+json")
    assert status == 200, changed
    assert changed["metadata"].get("generation") == (2 if tracked else None)
