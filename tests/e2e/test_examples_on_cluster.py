"""The examples applied to a real ``kubelab up --nodes 2`` cluster, and checked to answer.

- ``examples/first-lab``: the nginx Deployment rolls out and its Service answers by name from a pod.
- ``examples/shop``: product, payment and order talk over Service names: an order is priced and paid.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab import laptop
from kubelab.images import BUSYBOX, ensure_images
from kubelab.testing import kubectl

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Cluster:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=self.state_dir / "kubeconfig", input=input, check=check, timeout=timeout)

    def kubelab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelab", *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=300, check=False)


def _shop_builder() -> Any:
    spec = importlib.util.spec_from_file_location("shop_build", EXAMPLES / "shop" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[Cluster]:
    ensure_images(docker_client, ["busybox", "python", "nginx"])
    _shop_builder().build_shop_images(docker_client)
    c = Cluster(tmp_path_factory.mktemp("examples"))
    result = c.kubelab("up", "--port", "0", "--nodes", "2")
    try:
        assert result.returncode == 0, f"kubelab up failed:\n{result.stdout}\n{result.stderr}"
        c.kubectl("run", "client", "--image", BUSYBOX, "--", "sleep", "3600")
        c.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
        yield c
    finally:
        c.kubelab("down")
    assert laptop.cluster_name(c.state_dir)  # (the down above removed every container of this cluster)


def test_first_lab_answers(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "first-lab" / "web.yaml"))
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    page = cluster.kubectl("exec", "client", "--", "wget", "-qO-", "http://web").stdout
    assert "Welcome to nginx" in page


def test_shop_takes_an_order(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "shop" / "shop.yaml"))
    for service in ("product", "payment", "order"):
        cluster.kubectl("-n", "shop", "rollout", "status", f"deployment/{service}", "--timeout=120s")
    body = cluster.kubectl("exec", "client", "--", "wget", "-qO-",
                           "http://order.shop:8080/order?item=apple&qty=2").stdout
    order = json.loads(body)
    assert order.get("item") == "apple" and order.get("qty") == 2, order
