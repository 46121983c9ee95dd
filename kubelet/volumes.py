"""Pod volumes on the host: materialised under ``<root>/pods/<uid>/volumes/<name>``, bound by the runtime.

``kubelet.sync`` calls :meth:`VolumeManager.setup` on every sync of a running pod (so a changed
ConfigMap/Secret or pod label reaches its files on the next sync), :func:`container_mounts` to turn
a container's ``volumeMounts`` into host paths, and :meth:`VolumeManager.cleanup` when the pod is gone.

* ``emptyDir``: an empty directory, kept for the pod's life (restarts keep its content);
* ``configMap`` / ``secret`` (base64-decoded) / ``downwardAPI`` / ``projected``: files written
  the way Kubernetes' atomic writer does: the payload goes to a fresh ``..<timestamp>`` directory,
  then the ``..data`` symlink is swapped to it with a rename (readers see all old or all new
  files), and each top-level entry is a symlink through ``..data``. Nothing is rewritten when the
  payload is unchanged. ``items`` select and rename keys; ``defaultMode``/``mode`` set permissions;
  a projected ``serviceAccountToken`` source writes the pod's token from the
  :class:`kubelet.projected.TokenManager` (refreshed at 80% of its life, swapped in atomically);
* ``hostPath``: the host path itself (``DirectoryOrCreate``/``FileOrCreate`` create it);
* ``persistentVolumeClaim``: the directory of the claim's PersistentVolume (its ``hostPath`` or
  ``local`` path) bound into the containers. Until the claim is Bound the pod waits in
  ContainerCreating with a ``FailedMount`` event (``PVC is not bound``). A volume of the local-path
  provisioner is created on first mount, world-writable as k3s makes it.

A missing ConfigMap/Secret that is not ``optional`` raises :class:`VolumeError` (the kubelet's
``FailedMount`` event message). Blocking file work runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kubelet.envvars import ContainerConfigError, ObjectSource, PodContext, field_value, resource_value
from kubelet.projected import TokenError, TokenManager

__all__ = ["ClaimSource", "Mount", "VolumeError", "VolumeManager", "container_mounts", "write_atomic"]

DATA_DIR = "..data"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
LOCAL_PATH = "rancher.io/local-path"
_DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up; the message is the ``FailedMount`` event text."""


@dataclass(frozen=True)
class Mount:
    """One bind mount for the runtime."""

    container_path: str
    host_path: str
    """The volume's host directory (or hostPath); :attr:`source` applies ``sub_path``."""
    read_only: bool = False
    sub_path: str = ""

    @property
    def source(self) -> str:
        return os.path.join(self.host_path, self.sub_path) if self.sub_path else self.host_path


# -- the atomic writer -----------------------------------------------------------------------
def _current_payload(target: Path) -> dict[str, tuple[bytes, int]] | None:
    data = target / DATA_DIR
    if not data.is_symlink():
        return None
    out: dict[str, tuple[bytes, int]] = {}
    root = data.resolve()
    for dirpath, _dirs, files in os.walk(root):
        for file in files:
            path = Path(dirpath) / file
            out[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out


def write_atomic(target: Path, payload: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make ``target`` hold exactly ``payload`` (relative path → (content, mode)); True if it changed."""
    target.mkdir(parents=True, exist_ok=True)
    if _current_payload(target) == dict(payload):
        return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for rel, (content, mode) in payload.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    data = target / DATA_DIR
    old = data.resolve() if data.is_symlink() else None
    tmp = target / "..data_tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data)  # the atomic swap
    tops = {rel.split("/", 1)[0] for rel in payload}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{top}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops and entry.is_symlink():
            entry.unlink()
    if old is not None and old != stamp.resolve() and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    return True


# -- payloads --------------------------------------------------------------------------------
def _select(values: Mapping[str, bytes], source: Mapping[str, Any], kind: str, name: str
            ) -> dict[str, tuple[bytes, int]]:
    default_mode = int(source.get("defaultMode", _DEFAULT_MODE))
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in values.items()}
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = str(item["key"])
        if key not in values:
            if source.get("optional"):
                continue
            raise VolumeError(f"{kind} references non-existent config key: {key}")
        out[str(item.get("path") or key)] = (values[key], int(item.get("mode", default_mode)))
    return out


@runtime_checkable
class ClaimSource(Protocol):
    """Where PersistentVolumeClaims and PersistentVolumes come from (``None``: not found)."""

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        ...

    async def get_volume(self, name: str) -> dict[str, Any] | None:
        ...


class VolumeManager:
    """The volumes of every pod on one node, under ``root``."""

    def __init__(self, root: Path, source: ObjectSource, tokens: TokenManager | None = None) -> None:
        self.root = root
        self.source = source
        self.tokens = tokens
        """Where projected service-account tokens come from; None writes none (hollow nodes)."""

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid / "volumes"

    async def setup(self, pod: dict[str, Any], ctx: PodContext) -> dict[str, str]:
        """Materialise (or refresh) every volume of ``pod``; volume name → host path."""
        uid = str(pod["metadata"]["uid"])
        paths: dict[str, str] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = str(volume["name"])
            target = self.pod_dir(uid) / name
            host_path = volume.get("hostPath")
            if host_path is not None:
                paths[name] = await asyncio.to_thread(_host_path, host_path)
                continue
            claim = volume.get("persistentVolumeClaim")
            if claim is not None:
                paths[name] = await self._claim_path(str(pod["metadata"].get("namespace") or "default"),
                                                     str(claim.get("claimName") or ""))
                continue
            payload = await self._payload(pod, volume, ctx)
            if payload is None:  # emptyDir (and any type we keep as a plain directory)
                await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
                # World-writable as Kubernetes makes it: containers running as any uid can use it.
                await asyncio.to_thread(target.chmod, 0o777)
            else:
                await asyncio.to_thread(write_atomic, target, payload)
            paths[name] = str(target)
        return paths

    async def _claim_path(self, namespace: str, name: str) -> str:
        """The host directory of a bound claim's volume (VolumeError while it is not usable)."""
        if not isinstance(self.source, ClaimSource):
            raise VolumeError("persistentVolumeClaim volumes are not supported on this node")
        claim = await self.source.get_claim(namespace, name)
        if claim is None:
            raise VolumeError(f'persistentvolumeclaim "{name}" not found')
        if (claim.get("metadata") or {}).get("deletionTimestamp"):
            raise VolumeError(f'persistentvolumeclaim "{name}" is being deleted')
        volume_name = str((claim.get("spec") or {}).get("volumeName") or "")
        if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
            raise VolumeError(f"error processing PVC {namespace}/{name}: PVC is not bound")
        volume = await self.source.get_volume(volume_name)
        if volume is None:
            raise VolumeError(f'persistentvolume "{volume_name}" not found')
        spec = volume.get("spec") or {}
        if spec.get("hostPath") is not None:
            shared = ((volume.get("metadata") or {}).get("annotations") or {}).get(PROVISIONED_BY) == LOCAL_PATH
            return await asyncio.to_thread(_claim_dir, spec["hostPath"], shared)
        if spec.get("local") is not None:
            return await asyncio.to_thread(_host_path, {"path": spec["local"].get("path", ""), "type": "Directory"})
        raise VolumeError(f'persistentvolume "{volume_name}" has a volume source this node cannot mount')

    async def _payload(self, pod: dict[str, Any], volume: Mapping[str, Any], ctx: PodContext
                       ) -> dict[str, tuple[bytes, int]] | None:
        namespace = str(pod["metadata"].get("namespace") or "default")
        if volume.get("configMap") is not None:
            return await self._configmap(namespace, volume["configMap"])
        if volume.get("secret") is not None:
            return await self._secret(namespace, volume["secret"])
        if volume.get("downwardAPI") is not None:
            return _downward(pod, volume["downwardAPI"], ctx)
        if volume.get("projected") is not None:
            projected = volume["projected"]
            out: dict[str, tuple[bytes, int]] = {}
            for src in projected.get("sources") or []:
                mode = {"defaultMode": projected.get("defaultMode", _DEFAULT_MODE)}
                if src.get("configMap") is not None:
                    out.update(await self._configmap(namespace, {**mode, **src["configMap"]}))
                elif src.get("secret") is not None:
                    out.update(await self._secret(namespace, {**mode, **src["secret"]}))
                elif src.get("downwardAPI") is not None:
                    out.update(_downward(pod, {**mode, **src["downwardAPI"]}, ctx))
                elif src.get("serviceAccountToken") is not None and self.tokens is not None:
                    projection = src["serviceAccountToken"]
                    try:
                        token = await self.tokens.token(pod, projection)
                    except TokenError as exc:
                        raise VolumeError(str(exc)) from exc
                    out[str(projection.get("path") or "token")] = (token.encode(), int(mode["defaultMode"]))
            return out
        return None

    async def _configmap(self, namespace: str, ref: Mapping[str, Any]) -> dict[str, tuple[bytes, int]]:
        name = str(ref.get("name", ""))
        obj = await self.source.get_configmap(namespace, name)
        if obj is None:
            if ref.get("optional"):
                return {}
            raise VolumeError(f'configmap "{name}" not found')
        values = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        values.update({k: base64.b64decode(str(v)) for k, v in (obj.get("binaryData") or {}).items()})
        return _select(values, ref, "configmap", name)

    async def _secret(self, namespace: str, ref: Mapping[str, Any]) -> dict[str, tuple[bytes, int]]:
        name = str(ref.get("secretName") or ref.get("name") or "")
        obj = await self.source.get_secret(namespace, name)
        if obj is None:
            if ref.get("optional"):
                return {}
            raise VolumeError(f'secret "{name}" not found')
        values = {k: base64.b64decode(str(v)) for k, v in (obj.get("data") or {}).items()}
        return _select(values, ref, "secret", name)

    async def cleanup(self, uid: str) -> None:
        """Remove everything the pod's volumes left on the host (hostPaths are untouched)."""
        if self.tokens is not None:
            self.tokens.forget(uid)
        await asyncio.to_thread(shutil.rmtree, self.root / "pods" / uid, True)


def _downward(pod: dict[str, Any], source: Mapping[str, Any], ctx: PodContext) -> dict[str, tuple[bytes, int]]:
    default_mode = int(source.get("defaultMode", _DEFAULT_MODE))
    out: dict[str, tuple[bytes, int]] = {}
    for item in source.get("items") or []:
        try:
            if item.get("fieldRef") is not None:
                value = field_value(pod, str(item["fieldRef"].get("fieldPath", "")), ctx)
            elif item.get("resourceFieldRef") is not None:
                value = resource_value(pod, "", item["resourceFieldRef"], ctx)
            else:
                continue
        except ContainerConfigError as exc:
            raise VolumeError(str(exc)) from exc
        out[str(item["path"])] = (value.encode(), int(item.get("mode", default_mode)))
    return out


def _host_path(source: Mapping[str, Any]) -> str:
    path = Path(str(source["path"]))
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind in ("Directory", "File", "Socket") and not path.exists():
        raise VolumeError(f"hostPath type check failed: {path} does not exist")
    return str(path)


def _claim_dir(source: Mapping[str, Any], world_writable: bool) -> str:
    path = Path(str(source.get("path") or ""))
    created = not path.exists()
    result = _host_path(source)
    if created and world_writable and path.is_dir():
        path.chmod(0o777)
    return result


def container_mounts(container: Mapping[str, Any], volume_paths: Mapping[str, str]) -> list[Mount]:
    """``volumeMounts`` of ``container`` as host bind mounts (VolumeError for an unknown volume)."""
    mounts: list[Mount] = []
    for entry in container.get("volumeMounts") or []:
        name = str(entry["name"])
        if name not in volume_paths:
            raise VolumeError(f"volume {name!r} is not defined in the pod")
        sub_path = str(entry.get("subPath") or "")
        if sub_path.startswith("/") or ".." in sub_path.split("/"):
            raise VolumeError(f"invalid subPath {sub_path!r}")
        mounts.append(Mount(container_path=str(entry["mountPath"]), host_path=volume_paths[name],
                            read_only=bool(entry.get("readOnly")), sub_path=sub_path))
    return mounts
