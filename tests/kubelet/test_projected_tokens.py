"""Projected service-account tokens (kubelet.projected + kubelet.volumes): requested bound to the
pod with the audience and life the pod asks for, refreshed at 80% of their life (or 24 h) with an
atomic ``..data`` swap, kept while still valid when a refresh fails, forgotten with the pod."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from apiserver.admission_serviceaccount import api_access_volume
from kubelet.envvars import PodContext
from kubelet.projected import TokenError, TokenManager
from kubelet.volumes import VolumeError, VolumeManager


class FakeSource:
    """Issues ``token-<n>`` and records each request; ``fail`` makes requests fail."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.requests: list[dict[str, Any]] = []
        self.fail = False

    async def request_token(self, **request: Any) -> tuple[str, float]:
        if self.fail:
            raise TokenError("failed to fetch token: apiserver unavailable")
        self.requests.append(request)
        return f"token-{len(self.requests)}", self.clock[0] + request["expiration_seconds"]


class FakeObjects:
    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"data": {"ca.crt": "CA"}} if name == "kube-root-ca.crt" else None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


def _pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "team", "uid": "uid-1"},
            "spec": {"serviceAccountName": "robot", "volumes": volumes, "containers": [{"name": "c"}]}}


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def source(clock: list[float]) -> FakeSource:
    return FakeSource(clock)


@pytest.fixture
def manager(tmp_path: Path, source: FakeSource, clock: list[float]) -> VolumeManager:
    return VolumeManager(tmp_path, FakeObjects(), TokenManager(source, clock=lambda: clock[0]))


async def test_api_access_volume_is_written(manager: VolumeManager, source: FakeSource) -> None:
    paths = await manager.setup(_pod([api_access_volume("kube-api-access-abcde")]), PodContext())
    target = Path(paths["kube-api-access-abcde"])
    assert {p.name for p in target.iterdir() if not p.name.startswith("..")} == {"token", "ca.crt", "namespace"}
    assert (target / "token").read_text() == "token-1"
    assert (target / "ca.crt").read_text() == "CA" and (target / "namespace").read_text() == "team"
    assert (target / "token").stat().st_mode & 0o777 == 0o644
    assert source.requests == [{"namespace": "team", "service_account": "robot", "audience": "",
                                "expiration_seconds": 3607, "pod_name": "p", "pod_uid": "uid-1"}]


def _istio_volume(seconds: int) -> dict[str, Any]:
    return {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "istio-ca", "expirationSeconds": seconds, "path": "istio-token"}}]}}


async def test_token_refreshes_at_80_percent_without_replacing_the_directory(
        manager: VolumeManager, source: FakeSource, clock: list[float]) -> None:
    pod = _pod([_istio_volume(1000)])
    target = Path((await manager.setup(pod, PodContext()))["istio-token"])
    assert (target / "istio-token").read_text() == "token-1"
    assert source.requests[0]["audience"] == "istio-ca"
    first_data = os.readlink(target / "..data")
    clock[0] += 790  # under 80%: the cached token is kept, nothing is rewritten
    await manager.setup(pod, PodContext())
    assert len(source.requests) == 1 and os.readlink(target / "..data") == first_data
    clock[0] += 20  # past 80% of 1000 s
    await manager.setup(pod, PodContext())
    assert len(source.requests) == 2
    assert (target / "istio-token").read_text() == "token-2"
    assert os.readlink(target / "..data") != first_data  # swapped atomically through ..data
    assert os.readlink(target / "istio-token") == "..data/istio-token"


async def test_long_lived_token_refreshes_after_24_hours(manager: VolumeManager, source: FakeSource,
                                                         clock: list[float]) -> None:
    pod = _pod([_istio_volume(7 * 86400)])
    await manager.setup(pod, PodContext())
    clock[0] += 86400 + 1
    await manager.setup(pod, PodContext())
    assert len(source.requests) == 2


async def test_failed_refresh_keeps_a_valid_token_and_fails_an_expired_one(
        manager: VolumeManager, source: FakeSource, clock: list[float]) -> None:
    pod = _pod([_istio_volume(1000)])
    target = Path((await manager.setup(pod, PodContext()))["istio-token"])
    source.fail = True
    clock[0] += 900
    await manager.setup(pod, PodContext())
    assert (target / "istio-token").read_text() == "token-1"
    clock[0] += 200  # expired now
    with pytest.raises(VolumeError, match="failed to fetch token"):
        await manager.setup(pod, PodContext())


async def test_cleanup_forgets_the_pods_tokens(manager: VolumeManager, source: FakeSource) -> None:
    pod = _pod([_istio_volume(1000)])
    await manager.setup(pod, PodContext())
    await manager.cleanup("uid-1")
    await manager.setup(pod, PodContext())
    assert len(source.requests) == 2
