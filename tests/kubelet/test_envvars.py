"""Env resolution (kubelet.envvars) against ConfigMaps/Secrets in an embedded apiserver."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubelet.envvars import ApiObjectSource, ContainerConfigError, PodContext, expand, prepare_container, resolve_env
from machinery.client.rest import ApiClient
from machinery.resources import CONFIGMAPS, SECRETS

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "labels": {"app": "web"},
                 "annotations": {"team": "blue"}},
    "spec": {"nodeName": "node-a", "serviceAccountName": "default", "containers": [
        {"name": "c", "image": "x", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                                  "requests": {"cpu": "250m"}}}]},
}
CTX = PodContext(pod_ip="10.244.0.7", host_ip="127.0.0.1")


@pytest.fixture
async def source(client: ApiClient) -> ApiObjectSource:
    await client.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"},
                                     "data": {"color": "blue", "size": "L"}})
    await client.create(SECRETS, {"metadata": {"name": "sec", "namespace": "default"},
                                  "data": {"password": base64.b64encode(b"s3cret").decode()}})
    return ApiObjectSource(client)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("$(A)-x", "1-x", id="known"),
    pytest.param("$(NOPE)", "$(NOPE)", id="unknown-kept"),
    pytest.param("$$(A)", "$(A)", id="escaped"),
    pytest.param("$(A", "$(A", id="unclosed"),
    pytest.param("a$", "a$", id="trailing-dollar"),
    pytest.param("$x", "$x", id="not-a-reference"),
])
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"A": "1"}.get) == expected


@pytest.mark.parametrize(("entry", "expected"), [
    pytest.param({"value": "v"}, "v", id="value"),
    pytest.param({"valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}, "blue", id="configmap"),
    pytest.param({"valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}}, "s3cret", id="secret"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, "web", id="name"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}, "default", id="namespace"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}, "u-1", id="uid"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}, "web", id="label"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team']"}}}, "blue", id="annot"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, "node-a", id="node"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}, "default", id="sa"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, "10.244.0.7", id="pod-ip"),
    pytest.param({"valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}, "127.0.0.1", id="host-ip"),
    pytest.param({"valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}, "500",
                 id="cpu-millis"),
    pytest.param({"valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}, "1", id="cpu-rounds-up"),
    pytest.param({"valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}, "128",
                 id="memory-mi"),
    pytest.param({"valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}, str(128 * 2**20),
                 id="request-defaults-to-limit"),
    pytest.param({"valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}}, None,
                 id="optional-missing-key"),
    pytest.param({"valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}}, None,
                 id="optional-missing-secret"),
])
async def test_env_sources(source: ApiObjectSource, entry: dict[str, Any], expected: str | None) -> None:
    container = {"name": "c", "env": [{"name": "X", **entry}]}
    env = dict(await resolve_env(POD, container, source, CTX))
    assert env.get("X") == expected


@pytest.mark.parametrize(("entry", "message"), [
    pytest.param({"configMapKeyRef": {"name": "gone", "key": "k"}}, 'configmap "gone" not found', id="cm"),
    pytest.param({"configMapKeyRef": {"name": "cfg", "key": "k"}}, "couldn't find key k in ConfigMap default/cfg",
                 id="cm-key"),
    pytest.param({"secretKeyRef": {"name": "gone", "key": "k"}}, 'secret "gone" not found', id="secret"),
    pytest.param({"secretKeyRef": {"name": "sec", "key": "k"}}, "couldn't find key k in Secret default/sec",
                 id="secret-key"),
])
async def test_missing_reference_is_config_error(source: ApiObjectSource, entry: dict[str, Any],
                                                 message: str) -> None:
    with pytest.raises(ContainerConfigError) as info:
        await resolve_env(POD, {"name": "c", "env": [{"name": "X", "valueFrom": entry}]}, source, CTX)
    assert str(info.value) == message
    assert info.value.reason == "CreateContainerConfigError"


async def test_env_from_order_prefix_and_expansion(source: ApiObjectSource) -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}},
                    {"configMapRef": {"name": "missing", "optional": True}}],
        "env": [{"name": "CM_color", "value": "red"}, {"name": "MSG", "value": "$(CM_color)/$(CM_size)/$(LATER)"},
                {"name": "LATER", "value": "x"}],
        "command": ["echo", "$(MSG)"], "args": ["$$(MSG)"],
    }
    prepared = await prepare_container(POD, container, source, CTX)
    own = [e for e in prepared["env"] if not e["name"].startswith("KUBERNETES_")]  # the Service's come first
    assert own == [{"name": "CM_color", "value": "red"}, {"name": "CM_size", "value": "L"},
                               {"name": "password", "value": "s3cret"},
                               {"name": "MSG", "value": "red/L/$(LATER)"}, {"name": "LATER", "value": "x"}]
    assert prepared["command"] == ["echo", "red/L/$(LATER)"]
    assert prepared["args"] == ["$(MSG)"]
    assert "envFrom" not in prepared


async def test_env_from_missing_configmap(source: ApiObjectSource) -> None:
    with pytest.raises(ContainerConfigError, match='configmap "missing" not found'):
        await resolve_env(POD, {"name": "c", "envFrom": [{"configMapRef": {"name": "missing"}}]}, source, CTX)
