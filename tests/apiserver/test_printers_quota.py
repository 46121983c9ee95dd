"""Server-side printing of ResourceQuota, LimitRange and PodTemplate (Kubernetes' printers.go)."""

from __future__ import annotations

from datetime import UTC, datetime

from apiserver.printing.quota import limitrange_cells, podtemplate_cells, resourcequota_cells

NOW = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
CREATED = "2026-01-01T00:00:00Z"


def test_quota_row_splits_limits_from_requests_in_name_order() -> None:
    quota = {"metadata": {"name": "mem-cpu-demo", "creationTimestamp": CREATED},
             "status": {"hard": {"requests.memory": "1Gi", "limits.cpu": "2", "pods": "10", "requests.cpu": "1",
                                 "limits.memory": "2Gi"},
                        "used": {"requests.memory": "600Mi", "limits.cpu": "800m", "requests.cpu": "400m",
                                 "limits.memory": "800Mi"}}}
    assert resourcequota_cells(quota, NOW) == [
        "mem-cpu-demo", "10m", "pods: 0/10, requests.cpu: 400m/1, requests.memory: 600Mi/1Gi",
        "limits.cpu: 800m/2, limits.memory: 800Mi/2Gi"]


def test_quota_without_status_prints_empty_columns() -> None:
    assert resourcequota_cells({"metadata": {"name": "q", "creationTimestamp": CREATED}}, NOW) == ["q", "10m", "", ""]


def test_limit_range_prints_its_creation_time() -> None:
    assert limitrange_cells({"metadata": {"name": "lr", "creationTimestamp": CREATED}}, NOW) == ["lr", CREATED]


def test_pod_template_row() -> None:
    template = {"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
        "containers": [{"name": "a", "image": "kubelab/nginx:1.22"}, {"name": "b", "image": "kubelab/busybox:1.35"}]}}}
    assert podtemplate_cells(template, NOW) == ["t", "a,b", "kubelab/nginx:1.22,kubelab/busybox:1.35", "app=web"]
