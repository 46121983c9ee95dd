"""kubelet.stats: cgroup readings (v1 and v2 layouts), simulated usage of hollow pods, the Summary document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubelet.runtime.interface import ContainerKind, ContainerState, ContainerStatus
from kubelet.stats import FAKE_CPU_ANNOTATION, FAKE_MEMORY_ANNOTATION, SimulatedStats, cgroup_usage

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ID = "abc123"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("layout", ["docker", "systemd"])
def test_cgroup_v2_working_set_excludes_inactive_files(tmp_path: Path, layout: str) -> None:
    base = tmp_path / "docker" / ID if layout == "docker" else tmp_path / "system.slice" / f"docker-{ID}.scope"
    write(base / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    write(base / "memory.current", "10485760\n")
    write(base / "memory.stat", "anon 4194304\nfile 6291456\ninactive_file 2097152\n")
    assert cgroup_usage(ID, tmp_path) == (2_500_000_000, 10_485_760, 8_388_608)


def test_cgroup_v1(tmp_path: Path) -> None:
    write(tmp_path / "cpuacct" / "docker" / ID / "cpuacct.usage", "123456789\n")
    write(tmp_path / "memory" / "docker" / ID / "memory.usage_in_bytes", "5000000\n")
    write(tmp_path / "memory" / "docker" / ID / "memory.stat", "cache 100\ntotal_inactive_file 1000000\n")
    assert cgroup_usage(ID, tmp_path) == (123_456_789, 5_000_000, 4_000_000)


def test_no_cgroup_found(tmp_path: Path) -> None:
    assert cgroup_usage(ID, tmp_path) is None


class StubRuntime:
    """Two pods: ``hot`` (two running containers, annotated) and ``quiet`` (one running, one exited)."""

    def __init__(self, annotations: dict[str, str]) -> None:
        self.pods: dict[str, dict[str, Any]] = {
            "u1": {"metadata": {"name": "hot", "namespace": "default", "uid": "u1", "annotations": annotations}},
            "u2": {"metadata": {"name": "quiet", "namespace": "default", "uid": "u2"}},
        }
        started = NOW - timedelta(seconds=100)

        def status(uid: str, name: str, state: ContainerState) -> ContainerStatus:
            return ContainerStatus(id=f"{uid}-{name}", pod_uid=uid, name=name, kind=ContainerKind.REGULAR, attempt=0,
                                   image="x", image_id="x", state=state, created_at=started, started_at=started)

        self.containers = {"u1": [status("u1", "a", ContainerState.RUNNING),
                                  status("u1", "b", ContainerState.RUNNING)],
                           "u2": [status("u2", "c", ContainerState.RUNNING), status("u2", "d", ContainerState.EXITED)]}

    async def list_pod_uids(self) -> list[str]:
        return list(self.pods)

    def sandbox_pod(self, pod_uid: str) -> dict[str, Any] | None:
        return self.pods.get(pod_uid)

    async def list_containers(self, pod_uid: str) -> list[ContainerStatus]:
        return self.containers[pod_uid]


async def test_simulated_usage_follows_annotations_and_is_stable() -> None:
    runtime = StubRuntime({FAKE_CPU_ANNOTATION: "250m", FAKE_MEMORY_ANNOTATION: "64Mi"})
    stats = SimulatedStats("n1", runtime, clock=lambda: NOW)
    summary = await stats.summary()
    pods = {p["podRef"]["name"]: p for p in summary["pods"]}
    hot = pods["hot"]
    assert [c["cpu"]["usageNanoCores"] for c in hot["containers"]] == [125_000_000, 125_000_000]
    assert hot["cpu"]["usageNanoCores"] == 250_000_000
    assert hot["memory"]["workingSetBytes"] == 64 * 1024 * 1024
    assert hot["containers"][0]["cpu"]["usageCoreNanoSeconds"] == 125_000_000 * 100
    quiet = pods["quiet"]
    assert [c["name"] for c in quiet["containers"]] == ["c"]  # exited containers use nothing
    assert 1_000_000 <= quiet["cpu"]["usageNanoCores"] <= 5_000_000
    again = await SimulatedStats("n1", runtime, clock=lambda: NOW).summary()
    assert again == summary
    node = summary["node"]
    assert node["cpu"]["usageNanoCores"] == (SimulatedStats.NODE_BASE_NANO_CORES + 250_000_000
                                             + quiet["cpu"]["usageNanoCores"])


async def test_live_pod_annotations_win() -> None:
    runtime = StubRuntime({FAKE_CPU_ANNOTATION: "250m"})
    live = {"metadata": {"name": "hot", "annotations": {FAKE_CPU_ANNOTATION: "1"}}}
    stats = SimulatedStats("n1", runtime, lambda ns, name: live if name == "hot" else None, clock=lambda: NOW)
    summary = await stats.summary()
    hot = next(p for p in summary["pods"] if p["podRef"]["name"] == "hot")
    assert hot["cpu"]["usageNanoCores"] == 1_000_000_000
