"""Finished pods give their IP back on Docker nodes (``@pytest.mark.docker``).

One Docker node (``kubelet.server``'s Docker wiring, as in ``test_docker_kubelet``) whose pod CIDR is a
/29: six pod IPs. More one-shot pods than that run one after another, as a Job's pods do; every one
completes because a terminal pod's sandbox is stopped and its address released, while its exited
container stays: the first pod's log is still served (by the kubelet's log source, what
``kubectl logs`` reads through the apiserver) and its status keeps its ``podIP``. Deleting the pod
removes every container. The module uses its own cluster name and a /24 pod network; no traffic is
sent anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_asyncio

from kubelab.images import ensure_images
from kubelet.docker_streams import DockerStreams
from kubelet.runtime.docker import cleanup_cluster
from kubelet.runtime.docker_spec import KIND_SANDBOX, LABEL_CLUSTER, LABEL_KIND, LABEL_POD_UID
from kubelet.runtime.interface import ContainerState
from kubelet.settings import KubeletSettings
from kubelet.streams import LogOptions
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.resources import CONFIGMAPS, EVENTS, PODS
from tests.apiserver.conftest import embedded_api
from tests.kubelet.test_docker_kubelet import DockerKubelet

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

CLUSTER = f"t-dterm-{uuid.uuid4().hex[:6]}"
NODE = "docker-node-1"
NS = "default"
IMAGE = "kubelab/busybox:1.35"
RANGE = 6
"""Pod IPs in the node's /29."""
WAIT = 60.0
"""Generous: the machine is shared and Docker is slow under load."""


@pytest.fixture(scope="module")
def dclient(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    ensure_images(docker_client, ["busybox"])
    yield docker_client
    cleanup_cluster(docker_client, CLUSTER)


@pytest.fixture(scope="module")
def subnet(dclient: docker.DockerClient) -> ipaddress.IPv4Network:
    used = {str(cfg.get("Subnet")) for n in dclient.networks.list(greedy=True)
            for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []}
    while True:
        candidate = f"10.253.{random.randrange(256)}.0/24"
        if candidate not in used:
            return ipaddress.IPv4Network(candidate)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ApiClient]:
    async with embedded_api(tmp_path_factory.mktemp("apiserver")) as api:
        api_client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        # What the controller-manager's root CA publisher would do: pods' token volumes read it.
        await api_client.create(CONFIGMAPS, {"metadata": {"name": "kube-root-ca.crt", "namespace": NS},
                                             "data": {"ca.crt": (api.settings.pki_dir / "ca.crt").read_text()}})
        try:
            yield api_client
        finally:
            await api_client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def kubelet(client: ApiClient, dclient: docker.DockerClient, subnet: ipaddress.IPv4Network,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DockerKubelet]:
    settings = KubeletSettings(
        kubeconfig=Path("/nonexistent"), node_name=NODE, cluster_name=CLUSTER, pod_subnet=str(subnet),
        pod_cidr=f"{subnet.network_address + 16}/29", root_dir=tmp_path_factory.mktemp("kubelet"),
        network_agent=False, run_dns=False, lease_renew_interval=1.0)
    node = DockerKubelet(client, dclient, settings)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
        await asyncio.to_thread(cleanup_cluster, dclient, CLUSTER)


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.1)


def one_shot(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"job": "t"}},
            "spec": {"nodeName": NODE, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": IMAGE, "command": ["echo", f"{name} done"]}]}}


async def succeeded(client: ApiClient, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        pod = await client.get(PODS, name, namespace=NS)
        return pod if (pod.get("status") or {}).get("phase") == "Succeeded" else None

    found: dict[str, Any] = await until(check, f"pod {name} Succeeded")
    return found


async def sandbox_exited(dclient: docker.DockerClient, uid: str) -> bool:
    filters = {"label": [f"{LABEL_CLUSTER}={CLUSTER}", f"{LABEL_POD_UID}={uid}", f"{LABEL_KIND}={KIND_SANDBOX}"]}
    pauses = await asyncio.to_thread(dclient.containers.list, all=True, filters=filters, ignore_removed=True)
    return bool(pauses) and all(p.status == "exited" for p in pauses)


async def read_log(streams: DockerStreams, name: str) -> bytes:
    return b"".join([chunk async for chunk in await streams.logs(NS, name, "main", LogOptions())])


async def test_more_one_shot_pods_than_the_pod_cidr_holds_all_complete(
        client: ApiClient, dclient: docker.DockerClient, kubelet: DockerKubelet, subnet: ipaddress.IPv4Network
) -> None:
    names = [f"job-{index}" for index in range(RANGE + 3)]
    created: dict[str, dict[str, Any]] = {}
    ips: set[str] = set()
    try:
        for name in names:  # one after another, as a Job with parallelism 1 runs them
            created[name] = await client.create(PODS, one_shot(name), namespace=NS)
            pod = await succeeded(client, name)
            assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
            ips.add(pod["status"]["podIP"])
        assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(f"{subnet.network_address + 16}/29")
                   for ip in ips), ips
        for name in names:
            await until(functools.partial(sandbox_exited, dclient, created[name]["metadata"]["uid"]),
                        f"the sandbox of {name} stopped")
        failed = [e for e in (await client.list(EVENTS, namespace=NS))["items"]
                  if e.get("reason") == "FailedCreatePodSandBox"]
        assert failed == [], [e.get("message") for e in failed]

        first = await client.get(PODS, names[0], namespace=NS)
        assert first["status"]["phase"] == "Succeeded" and first["status"]["podIP"] in ips
        assert first["status"]["podIPs"] == [{"ip": first["status"]["podIP"]}]
        assert await read_log(DockerStreams(dclient), names[0]) == b"job-0 done\n"
        assert kubelet.runtime is not None
        [kept] = await kubelet.runtime.list_containers(created[names[0]]["metadata"]["uid"])
        assert (kept.name, kept.state, kept.exit_code) == ("main", ContainerState.EXITED, 0)
    finally:
        for name in created:
            with contextlib.suppress(NotFoundError):
                await client.delete(PODS, name, namespace=NS, grace_period_seconds=0)

    async def all_removed() -> bool:
        filters = {"label": [f"{LABEL_CLUSTER}={CLUSTER}"]}
        return not await asyncio.to_thread(dclient.containers.list, all=True, filters=filters, ignore_removed=True)

    await until(all_removed, "every container of the deleted pods removed")
