"""Field selectors: Kubernetes' string syntax, escaping, per-kind fields, zero values and errors."""

from __future__ import annotations

from typing import Any

import pytest

from machinery.errors import BadRequestError
from machinery.fieldselector import parse_field_selector

_POD: dict[str, Any] = {
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"restartPolicy": "Always"},
    "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]},
}


@pytest.mark.parametrize(
    ("text", "obj", "expected"),
    [
        pytest.param("metadata.name=web-1", _POD, True, id="name"),
        pytest.param("metadata.name==web-1,metadata.namespace=default", _POD, True, id="double-equals-and"),
        pytest.param("metadata.namespace!=default", _POD, False, id="not-equals"),
        pytest.param("spec.nodeName=", _POD, True, id="unset-node-name-is-empty"),
        pytest.param("spec.nodeName!=", _POD, False, id="unscheduled-not-selected"),
        pytest.param("status.phase=Running", _POD, True, id="phase"),
        pytest.param("status.podIP=10.0.0.5", _POD, True, id="pod-ip-from-pod-ips"),
        pytest.param("spec.unschedulable=false", {"kind": "Node", "spec": {}}, True, id="node-bool-zero"),
        pytest.param(
            "spec.unschedulable=true",
            {"kind": "Node", "spec": {"unschedulable": True}},
            True,
            id="node-cordoned",
        ),
        pytest.param(
            "type=kubernetes.io/tls", {"kind": "Secret", "type": "kubernetes.io/tls"}, True, id="secret-type"
        ),
        pytest.param(
            "involvedObject.name=web-1,involvedObject.kind=Pod",
            {"kind": "Event", "involvedObject": {"kind": "Pod", "name": "web-1"}},
            True,
            id="event",
        ),
        pytest.param(
            "source=kubelet", {"kind": "Event", "source": {"component": "kubelet"}}, True, id="event-source"
        ),
        pytest.param("status.replicas=0", {"kind": "ReplicaSet", "status": {}}, True, id="rs-replicas-zero"),
        pytest.param("", _POD, True, id="empty"),
    ],
)
def test_field_selector_matches(text: str, obj: dict[str, Any], expected: bool) -> None:
    assert parse_field_selector(text).matches(obj) is expected


def test_field_selector_validate_for() -> None:
    parse_field_selector("spec.nodeName=n1,metadata.name=x").validate_for("Pod")
    parse_field_selector("spec.nodeName=n1").validate_for("pods")
    with pytest.raises(BadRequestError, match=r"^field label not supported: spec.nodeName$"):
        parse_field_selector("spec.nodeName=n1").validate_for("ConfigMap")


def test_field_selector_syntax() -> None:
    selector = parse_field_selector(r"metadata.name=a\,b,status.phase!=Failed")
    assert selector.exact("metadata.name") == "a,b"
    assert str(selector) == r"metadata.name=a\,b,status.phase!=Failed"
    with pytest.raises(BadRequestError, match="invalid selector: 'nonsense'; can't understand 'nonsense'"):
        parse_field_selector("nonsense")
