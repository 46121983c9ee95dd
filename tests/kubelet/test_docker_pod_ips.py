"""Pod IPs from the node's pod CIDR on real Docker (``@pytest.mark.docker``): static sandbox addresses,
exhaustion without leftovers, a restarted runtime that hands out no address in use, foreign containers.

The module uses its own cluster name and a /24 pod network; each test runs as its own node with a small
pod CIDR inside it, so its teardown removes exactly its containers; the module's teardown removes the
network. No traffic is sent anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest

from kubelab.images import ensure_images
from kubelet.network.ipam import PodCIDRExhaustedError
from kubelet.runtime.docker import PAUSE_COMMAND, DockerRuntime, DockerRuntimeSettings, cleanup_cluster, network_name
from kubelet.runtime.docker_spec import LABEL_CLUSTER, LABEL_NODE, LABEL_POD_UID
from kubelet.runtime.interface import SandboxState
from tests.docker_daemon import ensure_docker

pytestmark = [pytest.mark.docker]

IMAGE = "kubelab/busybox:1.35"
CLUSTER = f"t-podip-{uuid.uuid4().hex[:6]}"


def make_pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": [{"name": "c", "image": IMAGE}]}}


@pytest.fixture(scope="module")
def dclient() -> Iterator[docker.DockerClient]:
    client = ensure_docker()
    ensure_images(client, ["busybox"])
    yield client
    cleanup_cluster(client, CLUSTER)
    client.close()


@pytest.fixture(scope="module")
def subnet(dclient: docker.DockerClient) -> ipaddress.IPv4Network:
    used = {str(cfg.get("Subnet")) for n in dclient.networks.list(greedy=True)
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []}
    while True:
        candidate = f"10.252.{random.randrange(256)}.0/24"
        if candidate not in used:
            return ipaddress.IPv4Network(candidate)


class Node:
    """One node's runtime over a pod CIDR; ``restart()`` builds a fresh runtime (a restarted kubelet)."""

    def __init__(self, dclient: docker.DockerClient, subnet: ipaddress.IPv4Network, pod_cidr: str) -> None:
        self.dclient = dclient
        self.name = f"node-{uuid.uuid4().hex[:6]}"
        self.settings = DockerRuntimeSettings(cluster=CLUSTER, node_name=self.name, pod_subnet=str(subnet),
                                              pod_cidr=pod_cidr)
        self.runtime = DockerRuntime(dclient, self.settings)

    async def restart(self) -> None:
        await self.runtime.close()
        self.runtime = DockerRuntime(self.dclient, self.settings)

    def containers(self, pod_uid: str | None = None) -> list[Any]:
        labels = [f"{LABEL_CLUSTER}={CLUSTER}", f"{LABEL_NODE}={self.name}"]
        if pod_uid:
            labels.append(f"{LABEL_POD_UID}={pod_uid}")
        return list(self.dclient.containers.list(all=True, filters={"label": labels}))


@pytest.fixture
async def make_node(dclient: docker.DockerClient, subnet: ipaddress.IPv4Network) -> AsyncIterator[Any]:
    nodes: list[Node] = []

    def make(pod_cidr: str) -> Node:
        node = Node(dclient, subnet, pod_cidr)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.runtime.close()
        for container in node.containers():
            container.remove(force=True)


def _cidr(subnet: ipaddress.IPv4Network, offset: int, prefix: int) -> str:
    return f"{subnet.network_address + offset}/{prefix}"


async def test_sandboxes_get_distinct_addresses_from_the_pod_cidr(
        make_node: Any, subnet: ipaddress.IPv4Network) -> None:
    cidr = _cidr(subnet, 16, 29)
    node = make_node(cidr)
    sandboxes = [await node.runtime.run_pod_sandbox(make_pod(f"p{i}")) for i in range(3)]
    ips = [s.ip for s in sandboxes]
    assert all(s.state is SandboxState.READY for s in sandboxes)
    assert len(set(ips)) == 3
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(cidr) for ip in ips), ips


async def test_exhausted_pod_cidr_fails_cleanly_and_recovers(make_node: Any, subnet: ipaddress.IPv4Network) -> None:
    node = make_node(_cidr(subnet, 32, 30))  # two addresses
    first = make_pod("first")
    await node.runtime.run_pod_sandbox(first)
    await node.runtime.run_pod_sandbox(make_pod("second"))
    third = make_pod("third")
    with pytest.raises(PodCIDRExhaustedError, match=r"no IP addresses available .* pod CIDR"):
        await node.runtime.run_pod_sandbox(third)
    assert await asyncio.to_thread(node.containers, third["metadata"]["uid"]) == []  # nothing half-created
    freed = await node.runtime.pod_sandbox_status(first["metadata"]["uid"])
    assert freed is not None
    await node.runtime.remove_pod_sandbox(first["metadata"]["uid"])
    sandbox = await node.runtime.run_pod_sandbox(third)
    assert sandbox.state is SandboxState.READY and sandbox.ip == freed.ip


async def test_a_restarted_runtime_never_hands_out_an_address_in_use(
        make_node: Any, subnet: ipaddress.IPv4Network) -> None:
    node = make_node(_cidr(subnet, 40, 30))  # two addresses
    r0, r1 = make_pod("r0"), make_pod("r1")
    ip0 = (await node.runtime.run_pod_sandbox(r0)).ip
    ip1 = (await node.runtime.run_pod_sandbox(r1)).ip
    await node.restart()
    late = make_pod("late")
    with pytest.raises(PodCIDRExhaustedError):
        await node.runtime.run_pod_sandbox(late)
    await node.runtime.remove_pod_sandbox(r0["metadata"]["uid"])
    assert (await node.runtime.run_pod_sandbox(late)).ip == ip0
    kept = await node.runtime.run_pod_sandbox(r1)  # still running: the same sandbox, the same address
    assert kept.ip == ip1 and kept.state is SandboxState.READY


async def test_an_address_held_by_a_foreign_container_is_skipped(
        make_node: Any, dclient: docker.DockerClient, subnet: ipaddress.IPv4Network) -> None:
    cidr = _cidr(subnet, 48, 30)  # .49 and .50
    taken = str(subnet.network_address + 49)
    node = make_node(cidr)
    await node.runtime.ensure_network()
    endpoint = dclient.api.create_endpoint_config(ipv4_address=taken)
    foreign = await asyncio.to_thread(
        dclient.containers.run, IMAGE, PAUSE_COMMAND, detach=True, network=network_name(CLUSTER),
        networking_config={network_name(CLUSTER): endpoint},
        labels={LABEL_CLUSTER: CLUSTER, LABEL_NODE: f"{node.name}-foreign"})
    try:
        sandbox = await node.runtime.run_pod_sandbox(make_pod("beside-a-stranger"))
        assert sandbox.ip == str(subnet.network_address + 50)
        with pytest.raises(PodCIDRExhaustedError):
            await node.runtime.run_pod_sandbox(make_pod("no-room"))
        await asyncio.to_thread(foreign.remove, force=True)
        # The stranger is gone: the range is re-read before it counts as full.
        assert (await node.runtime.run_pod_sandbox(make_pod("room-again"))).ip == taken
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            await asyncio.to_thread(foreign.remove, force=True)
