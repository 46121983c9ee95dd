"""The examples stay valid: manifests parse and pass the apiserver's validation, the shop works.

* every YAML document under ``examples/`` is created with ``dryRun=All`` against an embedded
  apiserver (:func:`tests.apiserver.conftest.embedded_api`): validation and defaulting run, nothing
  is stored (checked);
* every container image the manifests name is one kubelab builds (no registry is reachable);
* every Deployment rolls out without dropping requests: each serving container has a readiness
  probe and a ``preStop`` pause shorter than the grace period, and the oldest supported kubectl
  (1.27) applies every manifest to a real apiserver (``kubectl``);
* the shop's programs stop promptly and cleanly on SIGTERM (as PID 1 they would ignore it);
* the three shop services run on 127.0.0.1 (threads, ephemeral ports) and an order goes through
  product and payment;
* with Docker (``docker``, ``slow``): ``examples/shop/build.py`` builds the images and the order
  container reaches the product and payment containers by name on a test network.

Applying the examples to a real ``kubelab up --nodes`` cluster is the e2e suite's job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from kubelab.images import IMAGES
from kubelab.testing import kubectl, start_apiserver
from tests.apiserver.conftest import embedded_api
from tests.docker_daemon import TEST_LABEL

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SHOP = EXAMPLES / "shop"
MANIFESTS = sorted(EXAMPLES.rglob("*.yaml"))
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _collection(doc: dict[str, Any]) -> str:
    group_version, kind = str(doc["apiVersion"]), str(doc["kind"])
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    plural = kind.lower() + "s"
    if kind == "Namespace":
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{doc['metadata'].get('namespace', 'default')}/{plural}"


def _images(doc: dict[str, Any]) -> list[str]:
    if doc.get("kind") == "Pod":
        spec = doc.get("spec") or {}
        return [str(c["image"]) for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]
    outer = doc.get("spec") or {}
    if "jobTemplate" in outer:  # a CronJob's pods are one level deeper
        outer = (outer.get("jobTemplate") or {}).get("spec") or {}
    spec = (outer.get("template") or {}).get("spec") or {}
    return [str(c["image"]) for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]


def test_examples_exist() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in MANIFESTS}
    assert {"first-lab/web.yaml", "shop/shop.yaml"} <= names
    assert (EXAMPLES / "first-lab" / "README.md").is_file() and (SHOP / "README.md").is_file()


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(EXAMPLES).as_posix()) for p in MANIFESTS])
async def test_manifest_passes_validation_with_dry_run(path: Path, tmp_path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{path} has no objects"
    async with embedded_api(tmp_path) as api:
        # Namespaces the objects live in must exist for the dry run; create them for real.
        for namespace in {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")} - {"default"}:
            await api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": namespace}})
        for doc in docs:
            if doc["kind"] == "Namespace":
                continue
            status, body = await api.request("POST", _collection(doc) + "?dryRun=All&fieldValidation=Strict", doc)
            assert status == 201, f"{doc['kind']}/{doc['metadata']['name']}: {body}"
            assert body["metadata"]["name"] == doc["metadata"]["name"]
            status, _ = await api.request("GET", f"{_collection(doc)}/{doc['metadata']['name']}")
            assert status == 404, "dryRun=All stored the object"


def _readme_builds() -> dict[str, Path]:
    """Tag -> build context of every ``docker build -t TAG ... DIR`` line in the examples' READMEs."""
    found: dict[str, Path] = {}
    for readme in EXAMPLES.rglob("README.md"):
        for line in readme.read_text().splitlines():
            words = line.split()
            if words[:3] == ["docker", "build", "-t"]:
                found[words[3]] = ROOT / words[-1]
    return found


def test_readme_builds_have_a_dockerfile() -> None:
    builds = _readme_builds()
    assert "kubelab/hpa-example:1.0" in builds
    for tag, context in builds.items():
        assert (context / "Dockerfile").is_file(), f"{tag}: no Dockerfile in {context}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(EXAMPLES).as_posix()) for p in MANIFESTS])
def test_manifest_images_are_built_locally(path: Path) -> None:
    shop_build = _load(SHOP / "build.py", "shop_build")
    known = set(IMAGES.values()) | {shop_build.image_tag(s) for s in shop_build.SERVICES} | set(_readme_builds())
    docs = _documents(path)
    images = [image for doc in docs for image in _images(doc)]
    # Namespace policy objects (a lab's LimitRange or ResourceQuota) carry no pods.
    assert images or all(doc["kind"] in ("LimitRange", "ResourceQuota") for doc in docs)
    assert set(images) <= known
    assert not any(image.endswith(":latest") for image in images)


def _pod_templates(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
            for doc in _documents(path) if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def _pre_stop_seconds(hook: dict[str, Any]) -> int:
    """How long a preStop hook holds the container before SIGTERM: ``sleep: {seconds}`` or ``sleep N``."""
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = [str(part) for part in hook["exec"]["command"]]
    assert command[0] == "sleep", f"preStop should be a plain sleep, not {command}"
    return int(command[1])


@pytest.mark.parametrize("path", [pytest.param(p, id=p.relative_to(EXAMPLES).as_posix()) for p in MANIFESTS])
def test_workloads_are_ready_to_roll_without_dropping_requests(path: Path) -> None:
    """Readiness gates the endpoints of new pods; preStop keeps old ones serving while they leave."""
    templates = _pod_templates(path)
    if not templates and {d["kind"] for d in _documents(path)} <= {"CronJob", "Job"}:
        return  # run-to-completion pods serve nothing
    if not templates and {d["kind"] for d in _documents(path)} <= {"Pod", "LimitRange", "ResourceQuota"}:
        return  # a lab's single pods and namespace policies roll nothing
    assert templates, f"{path} has no workload"
    for name, spec in templates:
        grace = int(spec.get("terminationGracePeriodSeconds", 30))
        for container in spec["containers"]:
            if not container.get("ports"):
                continue
            where = f"{name}, container {container['name']}"
            assert container.get("readinessProbe"), f"{where}: no readinessProbe"
            hook = (container.get("lifecycle") or {}).get("preStop")
            assert hook, f"{where}: no preStop hook"
            assert 3 <= _pre_stop_seconds(hook) < grace, f"{where}: preStop must pause a few seconds, within {grace}s"


@pytest.mark.kubectl
def test_oldest_supported_kubectl_applies_every_manifest(tmp_path: Path) -> None:
    with start_apiserver(tmp_path / "api", store="sqlite") as server:
        for path in MANIFESTS:
            result = kubectl("apply", "-f", str(path), kubeconfig=server.kubeconfig, version="1.27", check=False)
            assert result.returncode == 0, f"{path}: {result.stderr}"
        hooks = kubectl("get", "deployments,statefulsets,daemonsets", "-A", "-o", "jsonpath={..lifecycle.preStop}",
                        kubeconfig=server.kubeconfig).stdout
    # A tutorial's update step re-applies the same object from another file: count each object once.
    workloads = {(d["metadata"].get("namespace", "default"), d["kind"], d["metadata"]["name"]): d
                 for p in MANIFESTS for d in _documents(p) if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")}
    assert hooks.count("sleep") == sum(len(d["spec"]["template"]["spec"]["containers"]) for d in workloads.values())


# -- the shop's programs ----------------------------------------------------------------------------


def _serve(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True, name="shop-test").start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _get(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def shop() -> Iterator[dict[str, str]]:
    servers = [_load(SHOP / "product" / "main.py", "shop_product").make_server("127.0.0.1", 0),
               _load(SHOP / "payment" / "main.py", "shop_payment").make_server("127.0.0.1", 0, limit=1000)]
    product, payment = (_serve(s) for s in servers)
    order_module = _load(SHOP / "order" / "main.py", "shop_order")
    servers.append(order_module.make_server("127.0.0.1", 0, product_url=product, payment_url=payment))
    urls = {"product": product, "payment": payment, "order": _serve(servers[-1])}
    # An order service whose backends are down (a port nobody listens on).
    servers.append(order_module.make_server("127.0.0.1", 0, product_url="http://127.0.0.1:9",
                                            payment_url="http://127.0.0.1:9"))
    urls["order-broken"] = _serve(servers[-1])
    yield urls
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("service", "path", "code", "expected"), [
    pytest.param("product", "/price?item=coffee", 200, {"item": "coffee", "price": 450}, id="product-price"),
    pytest.param("product", "/price?item=caviar", 404, {}, id="product-unknown-item"),
    pytest.param("order", "/order?item=apple&qty=3", 200, {"status": "paid", "total": 150, "qty": 3},
                 id="order-paid"),
    pytest.param("order", "/order?item=coffee&qty=3", 402, {"status": "payment declined", "total": 1350},
                 id="order-declined-over-limit"),
    pytest.param("order", "/order?item=caviar", 404, {"item": "caviar"}, id="order-unknown-item"),
    pytest.param("order", "/order?item=tea&qty=x", 400, {}, id="order-bad-qty"),
    pytest.param("order-broken", "/order?item=tea", 502, {"item": "tea"}, id="order-backend-down"),
    pytest.param("payment", "/healthz", 200, {"status": "ok"}, id="payment-healthz"),
])
def test_shop_services(shop: dict[str, str], service: str, path: str, code: int, expected: dict[str, Any]) -> None:
    status, body = _get(shop[service] + path)
    assert status == code, body
    assert expected.items() <= body.items()


def test_shop_payment_approves_with_an_id(shop: dict[str, str]) -> None:
    status, body = _get(shop["payment"] + "/pay", {"amount": 500})
    assert (status, body["status"], body["amount"]) == (200, "approved", 500)
    assert len(body["id"]) == 12


@pytest.mark.parametrize("service", ["product", "payment", "order"])
def test_shop_service_stops_cleanly_on_sigterm(service: str) -> None:
    env = {**os.environ, "PORT": "0", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(SHOP / service / "main.py")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on" in first, first
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert f"{service}: stopped" in output


# -- the shop's images on Docker ---------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_shop_images_talk_by_name(docker_client: docker.DockerClient) -> None:
    from kubelab.images import ensure_images

    ensure_images(docker_client, ["python"])
    tags = _load(SHOP / "build.py", "shop_build").build_shop_images(docker_client)
    assert set(tags) == {"kubelab/shop-product:0.1", "kubelab/shop-order:0.1", "kubelab/shop-payment:0.1"}
    run = uuid.uuid4().hex[:8]
    labels = {TEST_LABEL: f"shop-{run}"}
    network = docker_client.networks.create(f"kubelab-test-shop-{run}", driver="bridge", labels=labels)
    try:
        for service in ("product", "payment"):
            docker_client.containers.run(f"kubelab/shop-{service}:0.1", name=f"shop-{run}-{service}", detach=True,
                                         labels=labels, network=network.name)
            network.disconnect(f"shop-{run}-{service}")
            network.connect(f"shop-{run}-{service}", aliases=[service])
        order = docker_client.containers.run("kubelab/shop-order:0.1", name=f"shop-{run}-order", detach=True,
                                             labels=labels, network=network.name,
                                             ports={"8080/tcp": ("127.0.0.1", None)})
        order.reload()
        port = int(order.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 30
        answer: tuple[int, dict[str, Any]] = (0, {})
        while time.monotonic() < deadline:
            try:
                answer = _get(f"http://127.0.0.1:{port}/order?item=tea&qty=2")
                if answer[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        assert answer[0] == 200, answer
        assert answer[1]["status"] == "paid" and answer[1]["total"] == 600
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=shop-{run}"}):
            container.remove(force=True)
        network.remove()
