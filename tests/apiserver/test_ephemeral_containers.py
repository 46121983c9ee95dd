"""``pods/ephemeralcontainers``: what ``kubectl debug`` writes, with Kubernetes' rules and messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from machinery.client.rest import ApiClient
from machinery.errors import InvalidError, NotFoundError
from machinery.resources import PODS
from tests.apiserver.conftest import embedded_api

SUB = "ephemeralcontainers"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path) as api:
        api_client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        try:
            yield api_client
        finally:
            await api_client.close()


def pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "kubelab/nginx:1.25"}]}}


def debugger(name: str = "debugger", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "kubelab/busybox:1.35", "stdin": True, "tty": True, **extra}


async def add(client: ApiClient, *containers: dict[str, Any]) -> dict[str, Any]:
    return await client.patch(PODS, "web", {"spec": {"ephemeralContainers": list(containers)}},
                              namespace="default", patch_type="strategic", subresource=SUB)


async def test_patch_appends_and_changes_nothing_else(client: ApiClient) -> None:
    await client.create(PODS, pod())
    got = await client.get(PODS, "web", namespace="default", subresource=SUB)
    assert got["kind"] == "Pod" and not got["spec"].get("ephemeralContainers")
    updated = await client.patch(PODS, "web", {"metadata": {"labels": {"x": "y"}}, "spec": {
        "containers": [{"name": "app", "image": "other:1"}],
        "ephemeralContainers": [debugger(targetContainerName="app")]}},
        namespace="default", patch_type="strategic", subresource=SUB)
    assert [c["name"] for c in updated["spec"]["ephemeralContainers"]] == ["debugger"]
    assert updated["spec"]["ephemeralContainers"][0]["targetContainerName"] == "app"
    assert updated["spec"]["containers"][0]["image"] == "kubelab/nginx:1.25"
    assert "x" not in (updated["metadata"].get("labels") or {})
    # Strategic merge by name: a second one is appended.
    second = await add(client, debugger("debugger-2"))
    assert [c["name"] for c in second["spec"]["ephemeralContainers"]] == ["debugger", "debugger-2"]
    # PUT of the whole pod works too (kubectl <1.22 style, and client libraries).
    second["spec"]["ephemeralContainers"].append(debugger("debugger-3"))
    third = await client.update(PODS, second, subresource=SUB)
    assert len(third["spec"]["ephemeralContainers"]) == 3


@pytest.mark.parametrize(("container", "field", "message"), [
    (debugger(ports=[{"containerPort": 80}]), "spec.ephemeralContainers[0].ports",
     "Forbidden: cannot be set for an Ephemeral Container"),
    (debugger(readinessProbe={"exec": {"command": ["true"]}}), "spec.ephemeralContainers[0].readinessProbe",
     "Forbidden: cannot be set for an Ephemeral Container"),
    (debugger(resources={"limits": {"cpu": "1"}}), "spec.ephemeralContainers[0].resources",
     "Forbidden: cannot be set for an Ephemeral Container"),
    (debugger(lifecycle={"preStop": {"exec": {"command": ["true"]}}}), "spec.ephemeralContainers[0].lifecycle",
     "Forbidden: cannot be set for an Ephemeral Container"),
    (debugger("app"), "spec.ephemeralContainers[0].name", 'Duplicate value: "app"'),
    (debugger(targetContainerName="nope"), "spec.ephemeralContainers[0].targetContainerName",
     'Not found: "nope"'),
])
async def test_invalid_ephemeral_containers(client: ApiClient, container: dict[str, Any], field: str,
                                            message: str) -> None:
    await client.create(PODS, pod())
    with pytest.raises(InvalidError) as info:
        await add(client, container)
    assert f"{field}: {message}" in str(info.value)
    assert not (await client.get(PODS, "web", namespace="default"))["spec"].get("ephemeralContainers")


async def test_existing_ones_are_never_removed_or_changed(client: ApiClient) -> None:
    await client.create(PODS, pod())
    current = await add(client, debugger())
    current["spec"]["ephemeralContainers"] = []
    with pytest.raises(InvalidError) as info:
        await client.update(PODS, current, subresource=SUB)
    assert 'existing ephemeral containers "debugger" may not be removed' in str(info.value)
    current = await client.get(PODS, "web", namespace="default")
    current["spec"]["ephemeralContainers"][0]["image"] = "other:1"
    with pytest.raises(InvalidError) as info:
        await client.update(PODS, current, subresource=SUB)
    assert 'existing ephemeral containers "debugger" may not be changed' in str(info.value)


async def test_not_through_create_or_the_main_update(client: ApiClient) -> None:
    with pytest.raises(InvalidError) as info:
        await client.create(PODS, {**pod(), "spec": {**pod()["spec"], "ephemeralContainers": [debugger()]}})
    assert "spec.ephemeralContainers: Forbidden: cannot be set on create" in str(info.value)
    await client.create(PODS, pod())
    with pytest.raises(InvalidError) as info:
        await client.patch(PODS, "web", {"spec": {"ephemeralContainers": [debugger()]}}, namespace="default",
                           patch_type="strategic")
    assert "pod updates may not change fields" in str(info.value)


async def test_missing_pod_is_not_found(client: ApiClient) -> None:
    with pytest.raises(NotFoundError):
        await add(client, debugger())
