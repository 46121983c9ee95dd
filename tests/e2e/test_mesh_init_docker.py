"""istio-init on Docker: the injector's init container programs Istio's capture rules in the pod's
network namespace, and they really redirect.

A meshed pod gets the injector's ``istio-init`` (the ``kubelab/proxyv2`` image, root with
``NET_ADMIN``/``NET_RAW``) and, as its sidecar, a tiny HTTP listener on 15001 running as uid
1337 (probed on 15021, which inbound capture leaves alone). Its app (uid 0) fetches another
pod's page: the answer comes from the listener, so the connection was redirected to 15001; the
same fetch from the sidecar's uid reaches the other pod (the proxy's own traffic is exempt). The
init container's log shows the ``nat`` table it left.
Reuses the Docker kubelet module setup of :mod:`tests.kubelet.test_docker_kubelet`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import docker
import pytest

from kubelab.images import PROXYV2, ensure_images
from kubelet.runtime.docker import cleanup_cluster
from meshd.control.injector_template import init_container
from tests.kubelet import test_docker_kubelet as base
from tests.kubelet.test_docker_kubelet import SLEEP, DockerKubelet, container, pod_manifest, wait_pod

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

client, subnet, kubelet, create_pod = base.client, base.subnet, base.kubelet, base.create_pod


@pytest.fixture(scope="module")
def dclient(docker_client: docker.DockerClient) -> Any:
    ensure_images(docker_client, ["busybox", "proxyv2"])
    yield docker_client
    cleanup_cluster(docker_client, base.CLUSTER)


def serve(text: str, port: int) -> list[str]:
    return ["sh", "-c", f"mkdir -p /tmp/www && echo {text} > /tmp/www/index.html && "
            f"exec httpd -f -p {port} -h /tmp/www"]


def is_running(pod: dict[str, Any]) -> bool:
    return bool(pod["status"]["phase"] == "Running" and all(
        c.get("ready") for c in pod["status"]["containerStatuses"]))


async def fetch(kubelet: DockerKubelet, container_id: str, url: str) -> tuple[int, str]:
    assert kubelet.runtime is not None
    code, output = await kubelet.runtime.exec_sync(container_id, ["wget", "-q", "-O", "-", url], timeout=20)
    return code, output.decode().strip()


def container_id(pod: dict[str, Any], name: str) -> str:
    statuses = [*pod["status"].get("initContainerStatuses", []), *pod["status"]["containerStatuses"]]
    return str(next(s for s in statuses if s["name"] == name)["containerID"]).removeprefix("docker://")


async def test_istio_init_redirects_outbound_tcp_to_15001(client: Any, dclient: docker.DockerClient,
                                                          kubelet: DockerKubelet, create_pod: Any) -> None:
    await create_pod(pod_manifest("target", [container("web", serve("direct", 80))]))
    target = await wait_pod(client, "target", is_running, timeout=60)
    target_ip = target["status"]["podIP"]

    # Listens on 15001 (the capture port) and on 15021 for its startup probe: the kubelet's probes
    # reach the pod from outside, and inbound traffic is captured except on 15020/15021/15090.
    listener = container("istio-proxy", ["sh", "-c", "mkdir -p /tmp/www && echo redirected > /tmp/www/index.html "
                                         "&& httpd -p 15001 -h /tmp/www && exec httpd -f -p 15021 -h /tmp/www"],
                         restartPolicy="Always", securityContext={"runAsUser": 1337, "runAsGroup": 1337},
                         startupProbe={"tcpSocket": {"port": 15021}, "periodSeconds": 1, "failureThreshold": 60})
    init = init_container({}, PROXYV2)
    assert init["image"] == PROXYV2
    await create_pod(pod_manifest("meshed", [container("app", SLEEP)], initContainers=[init, listener]))
    meshed = await wait_pod(client, "meshed", is_running, timeout=90)

    init_status = next(s for s in meshed["status"]["initContainerStatuses"] if s["name"] == "istio-init")
    assert init_status["state"]["terminated"]["exitCode"] == 0
    logs = (await asyncio.to_thread(dclient.containers.get(container_id(meshed, "istio-init")).logs)).decode()
    for line in ("-A OUTPUT -j ISTIO_OUTPUT", "-A PREROUTING -p tcp -j ISTIO_INBOUND",
                 "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                 "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"):
        assert line in logs, logs

    # The app's connection to the other pod lands on the listener at 15001 ...
    assert await fetch(kubelet, container_id(meshed, "app"), f"http://{target_ip}:80/") == (0, "redirected")
    # ... while uid 1337 (the proxy) reaches the other pod itself.
    assert await fetch(kubelet, container_id(meshed, "istio-proxy"), f"http://{target_ip}:80/") == (0, "direct")
    # Without capture rules the same fetch reaches the other pod directly.
    assert await fetch(kubelet, container_id(target, "web"), f"http://{target_ip}:80/") == (0, "direct")
