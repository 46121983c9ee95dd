"""Volume materialisation (kubelet.volumes): layouts, modes, atomic updates and cleanup."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from kubelet.envvars import ApiObjectSource, PodContext
from kubelet.volumes import VolumeError, VolumeManager, container_mounts
from machinery.client.rest import ApiClient
from machinery.resources import CONFIGMAPS, SECRETS


def pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "uid-1", "labels": {"a": "1", "b": "2"}},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}}


@pytest.fixture
async def manager(client: ApiClient, tmp_path: Path) -> VolumeManager:
    await client.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"},
                                     "data": {"a.conf": "A", "b.conf": "B"}})
    await client.create(SECRETS, {"metadata": {"name": "sec", "namespace": "default"},
                                  "data": {"token": base64.b64encode(b"t0k").decode()}})
    return VolumeManager(tmp_path / "kubelet", ApiObjectSource(client))


@pytest.mark.parametrize(("volume", "files"), [
    pytest.param({"configMap": {"name": "cfg"}}, {"a.conf": ("A", 0o644), "b.conf": ("B", 0o644)}, id="configmap"),
    pytest.param({"configMap": {"name": "cfg", "defaultMode": 0o400,
                                "items": [{"key": "a.conf", "path": "sub/x.conf", "mode": 0o600}]}},
                 {"sub/x.conf": ("A", 0o600)}, id="items-and-mode"),
    pytest.param({"secret": {"secretName": "sec"}}, {"token": ("t0k", 0o644)}, id="secret-decoded"),
    pytest.param({"configMap": {"name": "gone", "optional": True}}, {}, id="optional-missing"),
    pytest.param({"downwardAPI": {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
    ]}}, {"name": ("p", 0o644), "labels": ('a="1"\nb="2"', 0o644), "mem": ("64", 0o644)}, id="downward-api"),
])
async def test_materialised_files(manager: VolumeManager, volume: dict[str, Any],
                                  files: dict[str, tuple[str, int]]) -> None:
    paths = await manager.setup(pod([{"name": "v", **volume}]), PodContext())
    target = Path(paths["v"])
    assert target == manager.root / "pods" / "uid-1" / "volumes" / "v"
    seen = {rel: ((target / rel).read_text(), (target / rel).stat().st_mode & 0o777) for rel in files}
    assert seen == files
    assert {e.name for e in target.iterdir() if not e.name.startswith("..")} == {r.split("/")[0] for r in files}
    if files:
        assert (target / "..data").is_symlink()


@pytest.mark.parametrize(("volume", "message"), [
    pytest.param({"configMap": {"name": "gone"}}, 'configmap "gone" not found', id="configmap"),
    pytest.param({"secret": {"secretName": "gone"}}, 'secret "gone" not found', id="secret"),
    pytest.param({"configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
                 "configmap references non-existent config key: nope", id="missing-key"),
])
async def test_missing_sources_fail(manager: VolumeManager, volume: dict[str, Any], message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        await manager.setup(pod([{"name": "v", **volume}]), PodContext())


async def test_configmap_update_reaches_files_atomically(manager: VolumeManager, client: ApiClient) -> None:
    spec = pod([{"name": "v", "configMap": {"name": "cfg"}}])
    target = Path((await manager.setup(spec, PodContext()))["v"])
    first = os.readlink(target / "..data")
    await manager.setup(spec, PodContext())
    assert os.readlink(target / "..data") == first  # unchanged payload: nothing rewritten
    cm = await client.get(CONFIGMAPS, "cfg", namespace="default")
    cm["data"] = {"a.conf": "A2", "c.conf": "C"}
    await client.update(CONFIGMAPS, cm)
    await manager.setup(spec, PodContext())
    assert os.readlink(target / "..data") != first
    assert (target / "a.conf").read_text() == "A2"
    assert (target / "c.conf").read_text() == "C"
    assert not (target / "b.conf").exists()
    assert not (target / first).exists()  # the old generation is removed


async def test_empty_dir_host_path_mounts_and_cleanup(manager: VolumeManager, tmp_path: Path) -> None:
    host = tmp_path / "host-data"
    spec = pod([{"name": "scratch", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}}])
    paths = await manager.setup(spec, PodContext())
    assert Path(paths["scratch"]).is_dir() and host.is_dir()
    assert Path(paths["scratch"]).stat().st_mode & 0o777 == 0o777  # any container uid may write (Kubernetes)
    mounts = container_mounts({"volumeMounts": [
        {"name": "scratch", "mountPath": "/cache"},
        {"name": "host", "mountPath": "/data", "readOnly": True, "subPath": "sub"}]}, paths)
    assert [(m.container_path, m.source, m.read_only) for m in mounts] == [
        ("/cache", paths["scratch"], False), ("/data", str(host / "sub"), True)]
    with pytest.raises(VolumeError):
        container_mounts({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, paths)
    await manager.cleanup("uid-1")
    assert not (manager.root / "pods" / "uid-1").exists()
    assert host.is_dir()  # hostPath is never removed
