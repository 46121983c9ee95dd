"""Server-side printing: pod status reasons, the Table envelope, includeObject, human ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apiserver.printing import column_definitions, human_duration, row_for, to_table
from machinery.errors import BadRequestError
from machinery.resources import lookup

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    """An RFC 3339 timestamp ``delta`` before NOW."""
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, namespace: str | None = "default", **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "7",
        "creationTimestamp": ago(minutes=5),
    }
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


def running(
    name: str, *, ready: bool = True, restarts: int = 0, last_finished: str | None = None
) -> dict[str, Any]:
    cs: dict[str, Any] = {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "image": "nginx",
        "state": {"running": {"startedAt": ago(minutes=4)}},
    }
    if last_finished:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last_finished}}
    return cs


def waiting(name: str, reason: str, restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}}}


def terminated(name: str, reason: str, exit_code: int) -> dict[str, Any]:
    return {
        "name": name,
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
    }


def pod(status: dict[str, Any], *, containers: int = 1, init: int = 0, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta("web-abc", **metadata),
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
            "initContainers": [{"name": f"i{i}", "image": "busybox"} for i in range(init)],
        },
        "status": status,
    }


def cells(plural: str, obj: dict[str, Any], group: str = "") -> list[Any]:
    resource = lookup(group, "v1", plural)
    assert resource is not None
    return list(row_for(resource, obj, "None", NOW)["cells"])


# --------------------------------------------------------------------------- pods

POD_STATUS_CASES = [
    pytest.param(
        {
            "phase": "Running",
            "podIP": "10.244.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [running("c0")],
        },
        {},
        ("1/1", "Running", "0"),
        id="running",
    ),
    pytest.param({"phase": "Pending"}, {}, ("0/1", "Pending", "0"), id="pending-unscheduled"),
    pytest.param(
        {"phase": "Running", "containerStatuses": [waiting("c0", "CrashLoopBackOff", 3)]},
        {},
        ("0/1", "CrashLoopBackOff", "3"),
        id="crashloop",
    ),
    pytest.param(
        {"phase": "Pending", "containerStatuses": [waiting("c0", "ErrImagePull")]},
        {},
        ("0/1", "ErrImagePull", "0"),
        id="err-image-pull",
    ),
    pytest.param(
        {"phase": "Pending", "containerStatuses": [waiting("c0", "ImagePullBackOff")]},
        {},
        ("0/1", "ImagePullBackOff", "0"),
        id="image-pull-backoff",
    ),
    pytest.param(
        {"phase": "Succeeded", "containerStatuses": [terminated("c0", "Completed", 0)]},
        {},
        ("0/1", "Completed", "0"),
        id="completed",
    ),
    pytest.param(
        {"phase": "Failed", "containerStatuses": [terminated("c0", "Error", 1)]},
        {},
        ("0/1", "Error", "0"),
        id="error",
    ),
    pytest.param(
        {
            "phase": "Failed",
            "containerStatuses": [{"name": "c0", "state": {"terminated": {"exitCode": 137, "signal": 9}}}],
        },
        {},
        ("0/1", "Signal:9", "0"),
        id="signal",
    ),
    pytest.param(
        {"phase": "Failed", "containerStatuses": [{"name": "c0", "state": {"terminated": {"exitCode": 3}}}]},
        {},
        ("0/1", "ExitCode:3", "0"),
        id="exit-code",
    ),
    pytest.param(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i0", "state": {"running": {}}},
                {"name": "i1", "state": {"waiting": {}}},
            ],
            "containerStatuses": [waiting("c0", "PodInitializing")],
        },
        {"init": 2},
        ("0/1", "Init:0/2", "0"),
        id="init-0-of-2",
    ),
    pytest.param(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                terminated("i0", "Completed", 0),
                {"name": "i1", "state": {"running": {}}},
            ],
            "containerStatuses": [waiting("c0", "PodInitializing")],
        },
        {"init": 2},
        ("0/1", "Init:1/2", "0"),
        id="init-1-of-2",
    ),
    pytest.param(
        {"phase": "Pending", "initContainerStatuses": [waiting("i0", "CrashLoopBackOff", 2)]},
        {"init": 1},
        ("0/1", "Init:CrashLoopBackOff", "2"),
        id="init-crashloop",
    ),
    pytest.param(
        {"phase": "Pending", "initContainerStatuses": [terminated("i0", "Error", 1)]},
        {"init": 1},
        ("0/1", "Init:Error", "0"),
        id="init-error",
    ),
    pytest.param(
        {"phase": "Running", "containerStatuses": [running("c0")]},
        {"deletionTimestamp": ago(seconds=3)},
        ("1/1", "Terminating", "0"),
        id="terminating",
    ),
    pytest.param(
        {"phase": "Succeeded", "containerStatuses": [terminated("c0", "Completed", 0)]},
        {"deletionTimestamp": ago(seconds=3)},
        ("0/1", "Completed", "0"),
        id="deleted-but-finished-is-not-terminating",
    ),
    pytest.param(
        {"phase": "Running", "reason": "NodeLost", "containerStatuses": [running("c0")]},
        {"deletionTimestamp": ago(seconds=3)},
        ("1/1", "Unknown", "0"),
        id="node-lost",
    ),
    pytest.param(
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        },
        {},
        ("0/1", "SchedulingGated", "0"),
        id="scheduling-gated",
    ),
    pytest.param(
        {"phase": "Running", "containerStatuses": [running("c0", restarts=3, last_finished=ago(minutes=5))]},
        {},
        ("1/1", "Running", "3 (5m ago)"),
        id="restarts-ago",
    ),
    pytest.param(
        {"phase": "Running", "containerStatuses": [running("c0"), running("c1", ready=False)]},
        {"containers": 2},
        ("1/2", "Running", "0"),
        id="one-of-two-ready",
    ),
    pytest.param(
        {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [terminated("c0", "Completed", 0), running("c1")],
        },
        {"containers": 2},
        ("1/2", "Running", "0"),
        id="completed-with-running-sibling",
    ),
]


@pytest.mark.parametrize(("status", "shape", "expected"), POD_STATUS_CASES)
def test_pod_ready_status_restarts(
    status: dict[str, Any], shape: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    containers = shape.pop("containers", 1)
    init = shape.pop("init", 0)
    row = cells("pods", pod(status, containers=containers, init=init, **shape))
    assert tuple(row[1:4]) == expected


def test_pod_sidecar_counts_as_container() -> None:
    obj = pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                {"name": "i0", "started": True, "ready": True, "restartCount": 1, "state": {"running": {}}}
            ],
            "containerStatuses": [running("c0")],
        },
        init=1,
    )
    obj["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    assert cells("pods", obj)[1:4] == ["2/2", "Running", "1"]


def test_pod_full_row_wide_columns() -> None:
    obj = pod(
        {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.0.7"}],
            "podIP": "10.244.0.7",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "example.com/gate", "status": "True"},
            ],
            "containerStatuses": [running("c0")],
        }
    )
    obj["spec"]["readinessGates"] = [{"conditionType": "example.com/gate"}, {"conditionType": "other"}]
    assert cells("pods", obj) == [
        "web-abc",
        "1/1",
        "Running",
        "0",
        "5m",
        "10.244.0.7",
        "node-1",
        "<none>",
        "1/2",
    ]


def test_pod_unscheduled_wide_columns_say_none() -> None:
    obj = pod({"phase": "Pending"})
    del obj["spec"]["nodeName"]
    assert cells("pods", obj)[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_finished_pod_row_has_completed_condition() -> None:
    resource = lookup("", "v1", "pods")
    assert resource is not None
    row = row_for(resource, pod({"phase": "Succeeded"}), "None", NOW)
    assert row["conditions"][0]["type"] == "Completed"
    assert "conditions" not in row_for(resource, pod({"phase": "Running"}), "None", NOW)


# --------------------------------------------------------------------------- the Table envelope


def _pods() -> list[dict[str, Any]]:
    first = pod({"phase": "Running", "containerStatuses": [running("c0")]})
    second = pod({"phase": "Pending"})
    second["metadata"]["name"] = "web-def"
    del second["apiVersion"], second["kind"]
    return [first, second]


def test_table_envelope_and_default_metadata_objects() -> None:
    resource = lookup("", "v1", "pods")
    assert resource is not None
    table = to_table(resource, _pods(), resource_version="169", continue_token="abc", now=NOW)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "169", "continue": "abc"}
    assert table["columnDefinitions"] == column_definitions(resource)
    assert [r["cells"][0] for r in table["rows"]] == ["web-abc", "web-def"]
    obj = table["rows"][0]["object"]
    assert obj == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _pods()[0]["metadata"],
    }


@pytest.mark.parametrize(
    ("mode", "expected_keys"),
    [
        pytest.param("None", None, id="none"),
        pytest.param("Metadata", {"kind", "apiVersion", "metadata"}, id="metadata"),
        pytest.param("Object", {"kind", "apiVersion", "metadata", "spec", "status"}, id="object"),
    ],
)
def test_include_object_modes(mode: str, expected_keys: set[str] | None) -> None:
    resource = lookup("", "v1", "pods")
    assert resource is not None
    table = to_table(resource, _pods(), resource_version="5", include_object=mode, now=NOW)
    assert "continue" not in table["metadata"]
    for row in table["rows"]:
        if expected_keys is None:
            assert "object" not in row
        else:
            assert set(row["object"]) == expected_keys
    if mode == "Object":
        # An item stored without its type still comes back as a decodable Pod.
        assert table["rows"][1]["object"]["kind"] == "Pod"
        assert table["rows"][1]["object"]["apiVersion"] == "v1"
        assert table["rows"][1]["object"]["status"] == {"phase": "Pending"}


def test_bad_include_object_is_bad_request() -> None:
    resource = lookup("", "v1", "pods")
    assert resource is not None
    with pytest.raises(BadRequestError):
        to_table(resource, [], resource_version="1", include_object="Everything")


def test_empty_list_still_has_columns() -> None:
    resource = lookup("apps", "v1", "deployments")
    assert resource is not None
    table = to_table(resource, [], resource_version="1", now=NOW)
    assert table["rows"] == []
    assert len(table["columnDefinitions"]) == 8


def test_missing_creation_timestamp_is_unknown_age() -> None:
    assert cells("configmaps", {"metadata": {"name": "x"}}) == ["x", 0, "<unknown>"]


# --------------------------------------------------------------------------- human durations


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        pytest.param(timedelta(seconds=-5), "<invalid>", id="future"),
        pytest.param(timedelta(seconds=-2), "<invalid>", id="two-seconds-future"),
        pytest.param(timedelta(milliseconds=-1500), "0s", id="skew-tolerated"),
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=5), "5s", id="5s"),
        pytest.param(timedelta(seconds=119, milliseconds=999), "119s", id="just-under-2m"),
        pytest.param(timedelta(minutes=2), "2m", id="2m"),
        pytest.param(timedelta(minutes=3, seconds=20), "3m20s", id="3m20s"),
        pytest.param(timedelta(minutes=9, seconds=59), "9m59s", id="9m59s"),
        pytest.param(timedelta(minutes=10, seconds=30), "10m", id="10m"),
        pytest.param(timedelta(minutes=61), "61m", id="61m"),
        pytest.param(timedelta(minutes=179, seconds=59), "179m", id="179m"),
        pytest.param(timedelta(hours=3), "3h", id="3h"),
        pytest.param(timedelta(hours=5, minutes=3), "5h3m", id="5h3m"),
        pytest.param(timedelta(hours=7, minutes=59), "7h59m", id="7h59m"),
        pytest.param(timedelta(hours=8, minutes=30), "8h", id="8h"),
        pytest.param(timedelta(hours=47, minutes=59), "47h", id="47h"),
        pytest.param(timedelta(hours=48), "2d", id="2d"),
        pytest.param(timedelta(days=2, hours=3), "2d3h", id="2d3h"),
        pytest.param(timedelta(days=7, hours=23), "7d23h", id="7d23h"),
        pytest.param(timedelta(days=8, hours=5), "8d", id="8d"),
        pytest.param(timedelta(days=729), "729d", id="729d"),
        pytest.param(timedelta(days=730), "2y", id="2y"),
        pytest.param(timedelta(days=800), "2y70d", id="2y70d"),
        pytest.param(timedelta(days=365 * 8 + 3), "8y", id="8y"),
    ],
)
def test_human_duration(delta: timedelta, expected: str) -> None:
    assert human_duration(delta) == expected
