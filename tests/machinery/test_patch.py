"""JSON merge patch, JSON patch and strategic merge patch, with the bodies kubectl really sends."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machinery.errors import BadRequestError, InvalidError
from machinery.patch import field_at, json_merge_patch, json_patch, strategic_merge_patch

# -- RFC 7386 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "patch", "expected"),
    [
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace-scalar"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null-deletes"),
        pytest.param({"a": ["b"]}, {"a": ["c", "d"]}, {"a": ["c", "d"]}, id="lists-replace"),
        pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested"),
        pytest.param(
            {"a": "foo"}, {"a": {"b": None, "c": "d"}}, {"a": {"c": "d"}}, id="nulls-stripped-in-new"
        ),
        pytest.param({"a": "b"}, ["c"], ["c"], id="non-object-patch-replaces"),
        pytest.param(
            {"metadata": {"labels": {"app": "web", "tier": "fe"}}},
            {"metadata": {"labels": {"tier": None}}},
            {"metadata": {"labels": {"app": "web"}}},
            id="kubectl-label-removal",
        ),
    ],
)
def test_json_merge_patch(original: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy(original)
    assert json_merge_patch(original, patch) == expected
    assert original == before


_SCALARS = st.booleans() | st.integers() | st.text(max_size=3)


def _json(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
        max_leaves=10,
    )


# The original may hold nulls anywhere; the target holds none, since a merge patch cannot express
# a null value (null means delete). Built without nulls rather than filtered, so that no example
# is thrown away.
_ORIGINAL = st.dictionaries(st.sampled_from("abcd"), _json(st.none() | _SCALARS), max_size=4)
_TARGET = st.dictionaries(st.sampled_from("abcd"), _json(_SCALARS), max_size=4)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``a`` into ``b``."""
    out: dict[str, Any] = {k: None for k in a if k not in b}
    for k, v in b.items():
        if k in a and a[k] == v:
            continue
        out[k] = _diff(a[k], v) if isinstance(a.get(k), dict) and isinstance(v, dict) else v
    return out


@given(_ORIGINAL, _TARGET)
def test_merge_patch_of_diff_roundtrips(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert json_merge_patch(a, _diff(a, b)) == b


# -- RFC 6902 ---------------------------------------------------------------------------------

_DEPLOY: dict[str, Any] = {"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 1}}


def test_json_patch_applies_without_mutating() -> None:
    before = copy.deepcopy(_DEPLOY)
    result = json_patch(
        _DEPLOY,
        [
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
            {"op": "remove", "path": "/metadata/labels/app"},
        ],
    )
    assert result == {"metadata": {"name": "web", "labels": {"tier": "fe"}}, "spec": {"replicas": 3}}
    assert before == _DEPLOY


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        pytest.param(
            [{"op": "test", "path": "/spec/replicas", "value": 2}], InvalidError, id="failing-test-422"
        ),
        pytest.param([{"op": "remove", "path": "/nope"}], InvalidError, id="missing-path-422"),
        pytest.param([{"op": "replace", "path": "/spec/x/y", "value": 1}], InvalidError, id="bad-parent-422"),
        pytest.param([{"op": "bogus", "path": "/x"}], BadRequestError, id="unknown-op-400"),
        pytest.param([{"path": "/x"}], BadRequestError, id="no-op-400"),
        pytest.param([{"op": "add", "path": "/x"}], BadRequestError, id="add-without-value-400"),
        pytest.param({"op": "add"}, BadRequestError, id="not-a-list-400"),
    ],
)
def test_json_patch_errors(ops: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        json_patch(_DEPLOY, ops)
    if error is InvalidError:
        assert isinstance(info.value, InvalidError)
        assert info.value.code == 422
        assert info.value.message == "the server rejected our request due to an error in our request"
        assert info.value.causes and info.value.causes[0].reason == "UnexpectedServerResponse"


# -- strategic merge patch --------------------------------------------------------------------


def _deployment(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"old": "1"}},
        "spec": {
            "replicas": 1,
            **spec,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
        },
    }


_NGINX = {
    "name": "nginx",
    "image": "nginx:1.25",
    "env": [{"name": "A", "value": "1"}],
    "ports": [{"containerPort": 80, "protocol": "TCP"}],
}
_SIDECAR = {"name": "sidecar", "image": "proxy:1"}

_KUBECTL_SECOND_APPLY = {
    "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
    "spec": {
        "replicas": 3,
        "template": {
            "spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [
                    {
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"name": "A", "value": "2"}],
                        "image": "nginx:1.26",
                        "name": "nginx",
                    }
                ],
            }
        },
    },
}


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def test_kubectl_second_apply_body() -> None:
    original = _deployment([_NGINX, _SIDECAR])
    before = copy.deepcopy(original)
    result = strategic_merge_patch(original, _KUBECTL_SECOND_APPLY, kind="Deployment")
    assert original == before
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["annotations"] == {
        "old": "1",
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
    }
    assert _containers(result) == [
        {
            "name": "nginx",
            "image": "nginx:1.26",
            "env": [{"name": "A", "value": "2"}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
        },
        _SIDECAR,  # added by someone else (e.g. an injector): kept, after the applied ones
    ]
    assert "$" not in repr(result)


@pytest.mark.parametrize(
    ("kind", "original", "patch", "expected"),
    [
        pytest.param(
            "Deployment",
            {"spec": {"paused": True, "replicas": 1}},
            {"spec": {"paused": None}},
            {"spec": {"replicas": 1}},
            id="rollout-resume-null-deletes",
        ),
        pytest.param(
            "Deployment",
            {"spec": {"replicas": 1}},
            {"spec": {"paused": True}},
            {"spec": {"replicas": 1, "paused": True}},
            id="rollout-pause",
        ),
        pytest.param(
            "Node",
            {"spec": {"podCIDR": "10.0.0.0/24"}},
            {"spec": {"unschedulable": True}},
            {"spec": {"podCIDR": "10.0.0.0/24", "unschedulable": True}},
            id="cordon",
        ),
        pytest.param(
            "Node",
            {"spec": {"unschedulable": True}},
            {"spec": {"unschedulable": None}},
            {"spec": {}},
            id="uncordon",
        ),
        pytest.param(
            "Pod",
            {"metadata": {"labels": {"a": "1", "b": "2"}}},
            {"metadata": {"labels": {"a": None}}},
            {"metadata": {"labels": {"b": "2"}}},
            id="label-removal",
        ),
        pytest.param(
            "Pod",
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"finalizers": ["c", "a"]}},
            {"metadata": {"finalizers": ["b", "c", "a"]}},
            id="finalizers-set-union",
        ),
        pytest.param(
            "Pod",
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
            {"metadata": {"finalizers": ["b"]}},
            id="delete-from-primitive-list",
        ),
        pytest.param(
            "Pod",
            {"spec": {"tolerations": [{"key": "a"}]}},
            {"spec": {"tolerations": [{"key": "b"}]}},
            {"spec": {"tolerations": [{"key": "b"}]}},
            id="atomic-list-replaced",
        ),
        pytest.param(
            "Node",
            {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}},
            {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}},
            {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}},
            id="taints-atomic-as-in-k8s",
        ),
        pytest.param(
            "Pod",
            {
                "status": {
                    "conditions": [{"type": "Ready", "status": "False"}, {"type": "Init", "status": "True"}]
                }
            },
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "Init", "status": "True"}]
                }
            },
            id="status-conditions-by-type",
        ),
        pytest.param(
            "Service",
            {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
            {"spec": {"ports": [{"port": 443, "name": "https"}]}},
            {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]}},
            id="service-ports-by-port",
        ),
        pytest.param(
            "Pod",
            {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 53, "protocol": "TCP"}]}]}},
            {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}},
            {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}},
            id="container-ports-keyed-by-port-only",
        ),
        pytest.param(
            "Pod",
            {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}},
            {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}},
            {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}},
            id="owner-references-by-uid",
        ),
        pytest.param(
            "Pod",
            {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}},
            {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}},
            {"spec": {"containers": [{"name": "b", "image": "y"}]}},
            id="list-element-delete",
        ),
        pytest.param(
            "Pod",
            {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}},
            {"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}},
            {"spec": {"containers": [{"name": "c", "image": "z"}]}},
            id="list-replace",
        ),
        pytest.param(
            "Pod",
            {"metadata": {"labels": {"a": "1"}}},
            {"metadata": {"labels": {"$patch": "replace", "b": "2"}}},
            {"metadata": {"labels": {"b": "2"}}},
            id="map-replace",
        ),
        pytest.param(
            "Pod",
            {"metadata": {"labels": {"a": "1"}}},
            {"metadata": {"labels": {"$patch": "delete"}}},
            {"metadata": {"labels": {}}},
            id="map-delete",
        ),
        pytest.param(
            "Pod",
            {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}},
            {
                "spec": {
                    "volumes": [
                        {"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["hostPath", "name"]}
                    ]
                }
            },
            {"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}},
            id="retain-keys-switches-volume-source",
        ),
        pytest.param(
            "Deployment",
            {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
            {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
            {"spec": {"strategy": {"type": "Recreate"}}},
            id="retain-keys-strategy",
        ),
        pytest.param(
            "Pod",
            {"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}},
            {
                "spec": {
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                    "containers": [{"name": "c", "image": "z"}],
                }
            },
            {"spec": {"containers": [{"name": "b"}, {"name": "c", "image": "z"}, {"name": "a"}]}},
            id="set-element-order-with-server-only-item",
        ),
        pytest.param(
            "Pod",
            {"spec": {"containers": [{"name": "a"}]}},
            {
                "spec": {
                    "containers": [{"name": "n", "env": [{"name": "X", "$patch": "delete"}], "image": None}]
                }
            },
            {"spec": {"containers": [{"name": "a"}, {"name": "n", "env": []}]}},
            id="new-element-has-no-directives-or-nulls",
        ),
        pytest.param(
            "Deployment",
            {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}]}}}},
            {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}},
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}
                    }
                }
            },
            id="pod-template-inside-deployment",
        ),
        pytest.param(
            "Widget",
            {"spec": {"items": [1, 2]}},
            {"spec": {"items": [3], "$patch": "merge", "x": None}},
            {"spec": {"items": [3]}},
            id="unknown-kind-is-merge-patch-without-directives",
        ),
    ],
)
def test_strategic_merge_patch(
    kind: str, original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = copy.deepcopy(original)
    patch_before = copy.deepcopy(patch)
    assert strategic_merge_patch(original, patch, kind=kind) == expected
    assert original == before and patch == patch_before


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        pytest.param(
            {"spec": {"containers": [{"image": "x"}]}},
            "does not contain declared merge key: name",
            id="missing-merge-key",
        ),
        pytest.param({"spec": {"$patch": "explode"}}, "Unknown patch type: explode", id="unknown-directive"),
        pytest.param(
            {"spec": {"$retainKeys": ["a"], "b": 1}},
            "not present in $retainKeys list: b",
            id="retain-keys-violation",
        ),
    ],
)
def test_strategic_merge_patch_errors(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequestError) as info:
        strategic_merge_patch({"spec": {}}, patch, kind="Pod")
    assert message in info.value.message


def test_result_shares_nothing_with_inputs() -> None:
    original = _deployment([_NGINX])
    result = strategic_merge_patch(original, {"spec": {"replicas": 2}}, kind="Deployment")
    _containers(result)[0]["env"].append({"name": "B"})
    assert len(_containers(original)[0]["env"]) == 1


@pytest.mark.parametrize(
    ("kind", "path", "merge_key"),
    [
        pytest.param("Deployment", "spec.template.spec.containers", "name", id="deployment-containers"),
        pytest.param("ReplicaSet", "spec.template.spec.containers.env", "name", id="rs-env"),
        pytest.param("Pod", "spec.containers.volumeMounts", "mountPath", id="volume-mounts"),
        pytest.param("Pod", "spec.initContainers.volumeDevices", "devicePath", id="volume-devices"),
        pytest.param("Pod", "spec.topologySpreadConstraints", "topologyKey", id="spread"),
        pytest.param("Pod", "spec.hostAliases", "ip", id="host-aliases"),
        pytest.param("Node", "status.addresses", "type", id="node-addresses"),
        pytest.param("Pod", "metadata.ownerReferences", "uid", id="owner-references"),
    ],
)
def test_merge_key_table(kind: str, path: str, merge_key: str) -> None:
    found = field_at(kind, path)
    assert found is not None and found.merge and found.merge_key == merge_key


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        pytest.param("Pod", "spec.tolerations", id="tolerations"),
        pytest.param("Node", "spec.taints", id="taints"),
        pytest.param("Pod", "status.containerStatuses", id="container-statuses"),
    ],
)
def test_atomic_lists(kind: str, path: str) -> None:
    found = field_at(kind, path)
    assert found is None or not found.merge
