"""The examples applied to a real ``kubelab up --nodes 2`` cluster, and checked to answer.

- ``examples/first-lab``: the nginx Deployment rolls out and its Service answers by name from a pod.
- ``examples/shop``: product, payment and order talk over Service names: an order is priced and paid.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _shop_builder() -> Any:
    spec = importlib.util.spec_from_file_location("shop_build", EXAMPLES / "shop" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox", "python", "nginx"])
    _shop_builder().build_shop_images(docker_client)
    with running_cluster(tmp_path_factory.mktemp("examples"), docker_client, "--nodes", "2") as c:
        c.kubectl("run", "client", "--image", BUSYBOX, "--", "sleep", "3600")
        c.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
        yield c


def test_first_lab_answers(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "first-lab" / "web.yaml"))
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=120s")
    page = cluster.kubectl("exec", "client", "--", "wget", "-qO-", "http://web").stdout
    assert "Welcome to nginx" in page


def test_shop_takes_an_order(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", str(EXAMPLES / "shop" / "shop.yaml"))
    for service in ("product", "payment", "order"):
        cluster.kubectl("-n", "shop", "rollout", "status", f"deployment/{service}", "--timeout=120s")
    body = cluster.kubectl("exec", "client", "--", "wget", "-qO-",
                           "http://order.shop:8080/order?item=apple&qty=2").stdout
    order = json.loads(body)
    assert order.get("item") == "apple" and order.get("qty") == 2, order
