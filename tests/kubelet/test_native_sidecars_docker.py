"""Native sidecars on real Docker containers: the app starts only once its sidecar has started,
and a Job's pod completes although its sidecar never exits on its own.

Reuses the Docker kubelet module setup of :mod:`tests.kubelet.test_docker_kubelet` (its fixtures
are imported: each module gets its own apiserver, kubelet and cleanup).
"""

from __future__ import annotations

from typing import Any

import docker
import pytest

from machinery.client.rest import ApiClient
from tests.kubelet import test_docker_kubelet as base
from tests.kubelet.test_docker_kubelet import (
    SLEEP,
    DockerKubelet,
    condition,
    container,
    pod_containers,
    pod_manifest,
    wait_pod,
)

# The Docker kubelet module's fixtures, instantiated again for this module.
client, dclient, subnet, kubelet, create_pod = base.client, base.dclient, base.subnet, base.kubelet, base.create_pod

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

# The sidecar answers HTTP on 15021 only after 2 s; the app exits 3 at once if it cannot reach it.
SIDECAR_HTTP = ["sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && sleep 2 && "
                "exec httpd -f -p 15021 -h /tmp/www"]
APP_NEEDS_SIDECAR = ["sh", "-c", "wget -q -O /dev/null http://127.0.0.1:15021/ || exit 3; "
                     "trap 'exit 0' TERM; sleep 3600 & wait"]


def init_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(s for s in pod["status"].get("initContainerStatuses") or [] if s["name"] == name))


async def test_app_starts_only_after_its_sidecar_started(client: ApiClient, kubelet: DockerKubelet,
                                                         create_pod: Any) -> None:
    ready = {"httpGet": {"path": "/", "port": 15021}, "periodSeconds": 1, "failureThreshold": 120}
    sidecar = container("proxy", SIDECAR_HTTP, restartPolicy="Always", startupProbe=ready, readinessProbe=ready)
    await create_pod(pod_manifest("gated", [container("app", APP_NEEDS_SIDECAR)], restartPolicy="Never",
                                  initContainers=[sidecar]))
    pod = await wait_pod(client, "gated", lambda p: p["status"]["phase"] == "Failed"
                         or (p["status"]["phase"] == "Running" and condition(p, "Ready") == "True"), timeout=60)
    assert pod["status"]["phase"] == "Running", pod["status"]
    [app] = pod["status"]["containerStatuses"]
    assert app["restartCount"] == 0 and "running" in app["state"] and app["ready"] is True
    proxy = init_status(pod, "proxy")
    assert proxy["started"] is True and proxy["ready"] is True and "running" in proxy["state"]
    assert proxy["state"]["running"]["startedAt"] <= app["state"]["running"]["startedAt"]
    assert condition(pod, "Initialized") == "True"


async def test_job_pod_with_sidecar_completes(client: ApiClient, dclient: docker.DockerClient,
                                              kubelet: DockerKubelet, create_pod: Any) -> None:
    created = await create_pod(pod_manifest(
        "job-with-sidecar", [container("work", ["sh", "-c", "sleep 1; echo done"])], restartPolicy="Never",
        initContainers=[container("proxy", SLEEP, restartPolicy="Always")]))
    pod = await wait_pod(client, "job-with-sidecar", lambda p: p["status"]["phase"] in ("Succeeded", "Failed"),
                         timeout=60)
    assert pod["status"]["phase"] == "Succeeded"
    [work] = pod["status"]["containerStatuses"]
    assert work["state"]["terminated"]["exitCode"] == 0
    assert "terminated" in init_status(pod, "proxy")["state"]
    running = [c for c in await pod_containers(dclient, created["metadata"]["uid"])
               if c.labels.get("io.kubernetes.container.name") == "proxy" and c.status == "running"]
    assert running == []
