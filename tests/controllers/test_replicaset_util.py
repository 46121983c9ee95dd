"""Pure ReplicaSet logic: deletion ranking, slow start, status, expectations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controllers.expectations import ControllerExpectations
from controllers.replicaset_util import calculate_status, pod_from_template, pods_to_delete, slow_start_batches

Obj = dict[str, Any]
NOW = datetime(2024, 1, 1, 0, 1, 0, tzinfo=UTC)


def _pod(name: str, *, node: str = "n1", phase: str = "Running", ready: bool = True, restarts: int = 0,
         created: str = "2024-01-01T00:00:00Z", ready_since: str = "2024-01-01T00:00:00Z") -> Obj:
    conds = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_since}]
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": {"app": "web"}},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conds, "containerStatuses": [{"restartCount": restarts}]}}


@pytest.mark.parametrize(("victim", "survivor"), [
    pytest.param(_pod("a", node=""), _pod("b"), id="unscheduled-first"),
    pytest.param(_pod("a", phase="Pending", ready=False), _pod("b", ready=False), id="pending-before-running"),
    pytest.param(_pod("a", phase="Unknown", ready=False), _pod("b", ready=False), id="unknown-before-running"),
    pytest.param(_pod("a", ready=False), _pod("b"), id="not-ready-first"),
    pytest.param(_pod("a", ready_since="2024-01-01T00:00:30Z"), _pod("b"), id="ready-shorter-first"),
    pytest.param(_pod("a", restarts=3), _pod("b"), id="more-restarts-first"),
    pytest.param(_pod("a", created="2024-01-01T00:00:10Z"), _pod("b"), id="newer-first"),
])
def test_deletion_preference(victim: Obj, survivor: Obj) -> None:
    assert pods_to_delete([survivor, victim], [survivor, victim], 1) == [victim]
    assert pods_to_delete([victim, survivor], [victim, survivor], 1) == [victim]


def test_doubled_up_node_first() -> None:
    alone = _pod("alone", node="n1")
    crowded = [_pod("c1", node="n2"), _pod("c2", node="n2")]
    assert pods_to_delete([alone, *crowded], [alone, *crowded], 1)[0]["metadata"]["name"] in {"c1", "c2"}


@pytest.mark.parametrize(("count", "batches"), [
    pytest.param(0, [], id="zero"),
    pytest.param(1, [1], id="one"),
    pytest.param(10, [1, 2, 4, 3], id="ten"),
    pytest.param(15, [1, 2, 4, 8], id="fifteen"),
])
def test_slow_start(count: int, batches: list[int]) -> None:
    assert slow_start_batches(count) == batches


def test_status_counts_and_failure_condition() -> None:
    rs = {"metadata": {"generation": 4}, "spec": {"minReadySeconds": 30,
                                                    "template": {"metadata": {"labels": {"app": "web", "x": "1"}}}}}
    pods = [_pod("a"), _pod("b", ready_since="2024-01-01T00:00:50Z"), _pod("c", ready=False)]
    pods[0]["metadata"]["labels"]["x"] = "1"
    st = calculate_status(rs, pods, now=NOW, manage_error=None, diff=0)
    assert st == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2, "availableReplicas": 1,
                  "observedGeneration": 4}
    failed = calculate_status(rs, pods, now=NOW, manage_error="quota", diff=-1)
    assert failed["conditions"][0]["reason"] == "FailedCreate"
    assert "conditions" not in calculate_status({**rs, "status": failed}, pods, now=NOW, manage_error=None, diff=0)


def test_pod_from_template() -> None:
    ref = {"kind": "ReplicaSet", "uid": "u", "controller": True}
    pod = pod_from_template({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}, namespace="ns",
                            generate_name="web-", owner_ref=ref)
    assert pod["metadata"] == {"generateName": "web-", "namespace": "ns", "ownerReferences": [ref],
                               "labels": {"a": "b"}}


def test_expectations() -> None:
    now = [0.0]
    exp = ControllerExpectations(clock=lambda: now[0])
    assert exp.satisfied("k")
    exp.expect_creations("k", 2)
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    assert not exp.satisfied("k")
    exp.creation_observed("k")
    assert exp.satisfied("k")
    exp.expect_deletions("k", ["ns/a", "ns/b"])
    exp.deletion_observed("k", "ns/a")
    exp.deletion_observed("k", "ns/a")
    assert exp.pending("k") == (0, 1)
    now[0] = 301.0
    assert exp.satisfied("k")
