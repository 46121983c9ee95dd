"""Server-side printing of every non-pod kind: exact cells, column names and priorities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apiserver.printing import column_definitions, row_for
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


def cells(plural: str, obj: dict[str, Any], group: str = "") -> list[Any]:
    resource = lookup(group, "v1", plural)
    assert resource is not None
    return list(row_for(resource, obj, "None", NOW)["cells"])


# --------------------------------------------------------------------------- other kinds

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]},
}

KIND_CASES = [
    pytest.param(
        "apps",
        "deployments",
        {
            "metadata": meta("web"),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        },
        ["web", "2/3", 3, 2, "5m", "nginx,side", "nginx:1.25,busybox", "app=web"],
        id="deployment",
    ),
    pytest.param(
        "apps",
        "deployments",
        {
            "metadata": meta("new"),
            "spec": {
                "selector": {
                    "matchLabels": {"app": "web", "tier": "fe"},
                    "matchExpressions": [
                        {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                        {"key": "zz", "operator": "DoesNotExist"},
                    ],
                },
                "template": TEMPLATE,
            },
        },
        [
            "new",
            "0/1",
            0,
            0,
            "5m",
            "nginx,side",
            "nginx:1.25,busybox",
            "app=web,env in (dev,prod),tier=fe,!zz",
        ],
        id="deployment-no-status-and-expressions",
    ),
    pytest.param(
        "apps",
        "replicasets",
        {
            "metadata": meta("web-5d8f"),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}},
                "template": TEMPLATE,
            },
            "status": {"replicas": 2, "readyReplicas": 1},
        },
        ["web-5d8f", 2, 2, 1, "5m", "nginx,side", "nginx:1.25,busybox", "app=web,pod-template-hash=5d8f"],
        id="replicaset",
    ),
    pytest.param(
        "",
        "services",
        {
            "metadata": meta("web"),
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            },
        },
        ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "5m", "app=web"],
        id="service-clusterip",
    ),
    pytest.param(
        "",
        "services",
        {
            "metadata": meta("np"),
            "spec": {
                "type": "NodePort",
                "clusterIPs": ["10.96.0.11"],
                "externalIPs": ["1.2.3.4"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
            },
        },
        ["np", "NodePort", "10.96.0.11", "1.2.3.4", "80:30080/TCP", "5m", "<none>"],
        id="service-nodeport",
    ),
    pytest.param(
        "",
        "services",
        {
            "metadata": meta("lb"),
            "spec": {
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.0.12"],
                "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}],
            },
        },
        ["lb", "LoadBalancer", "10.96.0.12", "<pending>", "443:31443/TCP", "5m", "<none>"],
        id="service-lb-pending",
    ),
    pytest.param(
        "",
        "services",
        {
            "metadata": meta("lb2"),
            "spec": {
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.0.13"],
                "externalIPs": ["9.9.9.9"],
                "ports": [],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}},
        },
        ["lb2", "LoadBalancer", "10.96.0.13", "5.6.7.8,lb.example.com,9.9.9.9", "<none>", "5m", "<none>"],
        id="service-lb-ingress",
    ),
    pytest.param(
        "",
        "services",
        {
            "metadata": meta("headless"),
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]},
        },
        ["headless", "ClusterIP", "None", "<none>", "80/TCP", "5m", "<none>"],
        id="service-headless",
    ),
    pytest.param(
        "",
        "nodes",
        {
            "metadata": meta(
                "node-1",
                None,
                labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"},
                creationTimestamp=ago(days=2, hours=3),
            ),
            "spec": {"unschedulable": True},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "addresses": [
                    {"type": "Hostname", "address": "node-1"},
                    {"type": "InternalIP", "address": "172.18.0.2"},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.32.0",
                    "osImage": "Debian GNU/Linux 12",
                    "kernelVersion": "6.1.0",
                    "containerRuntimeVersion": "docker://24.0.7",
                },
            },
        },
        [
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,worker",
            "2d3h",
            "v1.32.0",
            "172.18.0.2",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0",
            "docker://24.0.7",
        ],
        id="node-cordoned",
    ),
    pytest.param(
        "",
        "nodes",
        {
            "metadata": meta("node-2", None),
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
        },
        ["node-2", "NotReady", "<none>", "5m", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"],
        id="node-not-ready",
    ),
    pytest.param(
        "",
        "nodes",
        {"metadata": meta("node-3", None)},
        ["node-3", "Unknown", "<none>", "5m", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"],
        id="node-no-conditions",
    ),
    pytest.param(
        "",
        "namespaces",
        {"metadata": meta("team-a", None), "status": {"phase": "Active"}},
        ["team-a", "Active", "5m"],
        id="namespace",
    ),
    pytest.param(
        "",
        "configmaps",
        {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
        ["cfg", 3, "5m"],
        id="configmap",
    ),
    pytest.param(
        "",
        "secrets",
        {
            "metadata": meta("tls"),
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "eA==", "tls.key": "eA=="},
        },
        ["tls", "kubernetes.io/tls", 2, "5m"],
        id="secret",
    ),
    pytest.param(
        "", "serviceaccounts", {"metadata": meta("default")}, ["default", 0, "5m"], id="serviceaccount"
    ),
    pytest.param(
        "",
        "endpoints",
        {
            "metadata": meta("web"),
            "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}],
        },
        ["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...", "5m"],
        id="endpoints-more",
    ),
    pytest.param(
        "",
        "endpoints",
        {
            "metadata": meta("v6"),
            "subsets": [
                {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 8080}]},
                {"addresses": [{"ip": "10.0.0.9"}]},
            ],
        },
        ["v6", "[fd00::1]:8080,10.0.0.9", "5m"],
        id="endpoints-ipv6-and-headless",
    ),
    pytest.param(
        "", "endpoints", {"metadata": meta("empty")}, ["empty", "<none>", "5m"], id="endpoints-none"
    ),
    pytest.param(
        "coordination.k8s.io",
        "leases",
        {"metadata": meta("node-1", "kube-node-lease"), "spec": {"holderIdentity": "node-1"}},
        ["node-1", "node-1", "5m"],
        id="lease",
    ),
    pytest.param(
        "",
        "events",
        {
            "metadata": meta("web-abc.17a"),
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "involvedObject": {"kind": "Pod", "name": "web-abc", "fieldPath": "spec.containers{c0}"},
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(hours=1),
            "lastTimestamp": ago(seconds=30),
            "count": 12,
        },
        [
            "30s",
            "Warning",
            "BackOff",
            "pod/web-abc",
            "spec.containers{c0}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "60m",
            12,
            "web-abc.17a",
        ],
        id="event-core",
    ),
    pytest.param(
        "",
        "events",
        {
            "metadata": meta("web.18b"),
            "type": "Normal",
            "reason": "ScalingReplicaSet",
            "message": "Scaled up",
            "involvedObject": {"kind": "Deployment", "name": "web"},
            "reportingComponent": "deployment-controller",
            "eventTime": "2024-05-01T11:59:50.123456Z",
        },
        [
            "9s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up",
            "9s",
            1,
            "web.18b",
        ],
        id="event-new-api",
    ),
]


@pytest.mark.parametrize(("group", "plural", "obj", "expected"), KIND_CASES)
def test_kind_cells(group: str, plural: str, obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells(plural, obj, group) == expected


EXPECTED_HEADERS = [
    pytest.param(
        "",
        "pods",
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ],
        id="pods",
    ),
    pytest.param(
        "apps",
        "deployments",
        [
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        id="deployments",
    ),
    pytest.param(
        "",
        "events",
        [
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1),
        ],
        id="events",
    ),
    pytest.param(
        "",
        "nodes",
        [
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0),
            ("Internal-IP", 1),
            ("External-IP", 1),
            ("OS-Image", 1),
            ("Kernel-Version", 1),
            ("Container-Runtime", 1),
        ],
        id="nodes",
    ),
]


@pytest.mark.parametrize(("group", "plural", "expected"), EXPECTED_HEADERS)
def test_column_names_and_priorities(group: str, plural: str, expected: list[tuple[str, int]]) -> None:
    resource = lookup(group, "v1", plural)
    assert resource is not None
    columns = column_definitions(resource)
    assert [(c["name"], c["priority"]) for c in columns] == expected
    assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in columns)


@pytest.mark.parametrize(
    ("group", "plural"),
    [
        pytest.param("", "pods", id="pods"),
        pytest.param("", "services", id="services"),
        pytest.param("", "nodes", id="nodes"),
        pytest.param("", "events", id="events"),
        pytest.param("apps", "replicasets", id="replicasets"),
        pytest.param("", "secrets", id="secrets"),
        pytest.param("coordination.k8s.io", "leases", id="leases"),
        pytest.param("", "endpoints", id="endpoints"),
    ],
)
def test_cells_match_columns_for_empty_object(group: str, plural: str) -> None:
    """Even a bare object (only a name) yields one cell per column and never raises."""
    resource = lookup(group, "v1", plural)
    assert resource is not None
    row = row_for(resource, {"metadata": {"name": "x"}}, "None", NOW)
    assert len(row["cells"]) == len(column_definitions(resource))
