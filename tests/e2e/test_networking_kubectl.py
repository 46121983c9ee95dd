"""Networking APIs through real kubectl and the official Python client: EndpointSlices (kubectl 1.32+
``describe svc`` reads them), Ingress/IngressClass, NetworkPolicy validation.

One apiserver process per module; the EndpointSlice controller runs in the test's event loop against it
(no kubelet: the test plays the node and sets pod status itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.endpointslice import EndpointSliceController
from controllers.settings import ControllerManagerSettings
from kubelab.testing import RunningApiServer, kubectl, start_apiserver
from machinery.client import ApiClient, InformerFactory
from machinery.resources import ENDPOINTSLICES, INGRESSES, NAMESPACES, PODS, SERVICES
from tests.e2e import pyclient

pytestmark = [pytest.mark.kubectl]

_names = itertools.count()


@contextlib.asynccontextmanager
async def _cluster(tmp_path: Path) -> AsyncIterator[tuple[RunningApiServer, ApiClient]]:
    server = await asyncio.to_thread(start_apiserver, tmp_path / "state")
    client = ApiClient.from_kubeconfig(server.kubeconfig)
    factory = InformerFactory(client)
    controller = EndpointSliceController(client, factory, ControllerManagerSettings(leader_elect=False))
    await factory.start()
    await factory.wait_synced()
    task = asyncio.create_task(controller.run(1), name="endpointslice")
    try:
        yield server, client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await factory.stop()
        await client.close()
        await asyncio.to_thread(server.stop)


async def _kubectl(server: RunningApiServer, *args: str, version: str | None = None, check: bool = True,
                   input: str | None = None) -> Any:
    return await asyncio.to_thread(kubectl, *args, kubeconfig=server.kubeconfig, version=version, check=check,
                                   input=input)


async def _serve_web(client: ApiClient, ns: str, ips: list[str]) -> None:
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                   "spec": {"selector": {"app": "web"},
                                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
                        namespace=ns)
    for i, ip in enumerate(ips):
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
                                   "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}},
                            namespace=ns)
        pod = await client.get(PODS, f"web-{i}", namespace=ns)
        pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "conditions": [{"type": "Ready", "status": "True"}]}
        await client.update(PODS, pod, subresource="status")
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        listed = await client.list(ENDPOINTSLICES, namespace=ns, label_selector="kubernetes.io/service-name=web")
        found = {a for s in listed["items"] for e in s.get("endpoints") or [] for a in e["addresses"]}
        if found == set(ips):
            return
        assert asyncio.get_running_loop().time() < deadline, f"slices never showed {ips}: {listed['items']}"
        await asyncio.sleep(0.1)


async def test_networking_kinds_with_kubectl(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as (server, client):
        ns = f"net-{next(_names)}"
        await _serve_web(client, ns, ["10.244.0.5", "10.244.0.6"])

        for version in ("1.32", "1.33"):
            described = (await _kubectl(server, "describe", "svc", "web", "-n", ns, version=version)).stdout
            line = next(x for x in described.splitlines() if x.startswith("Endpoints:"))
            assert line.split()[1] == "10.244.0.5:8080,10.244.0.6:8080", described

        table = (await _kubectl(server, "get", "endpointslices", "-n", ns)).stdout.splitlines()
        assert table[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        assert table[1].split()[1:4] == ["IPv4", "8080", "10.244.0.5,10.244.0.6"]
        kube = (await _kubectl(server, "get", "endpointslice", "kubernetes", "-n", "default",
                               "-o", "jsonpath={.metadata.labels.kubernetes\\.io/service-name}")).stdout
        assert kube == "kubernetes"

        await _kubectl(server, "apply", "-f", "-", input=(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: istio\n"
            "spec:\n  controller: istio.io/ingress-controller\n"))
        await _kubectl(server, "create", "ingress", "web", "-n", ns, "--class=istio",
                       "--rule=foo.example.com/bar*=web:80", "--rule=other.example.com/=web:http,tls=web-cert")
        table = (await _kubectl(server, "get", "ingress", "-n", ns)).stdout.splitlines()
        assert table[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        assert table[1].split()[:4] == ["web", "istio", "foo.example.com,other.example.com", "80,"]
        ingress = await client.get(INGRESSES, "web", namespace=ns)
        paths = ingress["spec"]["rules"][0]["http"]["paths"]
        assert paths == [{"path": "/bar", "pathType": "Prefix",
                          "backend": {"service": {"name": "web", "port": {"number": 80}}}}]
        classes = (await _kubectl(server, "get", "ingressclass")).stdout.splitlines()
        assert classes[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
        assert classes[1].split()[:3] == ["istio", "istio.io/ingress-controller", "<none>"]

        bad = await _kubectl(server, "apply", "-n", ns, "-f", "-", check=False, input=(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: bad\nspec:\n"
            "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/33\n"
            "        except: [192.168.0.0/24]\n"))
        assert bad.returncode != 0
        assert 'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value' \
            in bad.stderr, bad.stderr
        await _kubectl(server, "apply", "-n", ns, "-f", "-", input=(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\nspec:\n"
            "  podSelector:\n    matchLabels: {app: web}\n"))
        policies = (await _kubectl(server, "get", "netpol", "-n", ns)).stdout.splitlines()
        assert policies[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
        assert policies[1].split()[:2] == ["deny", "app=web"]


async def test_python_client_discovery_and_networking(tmp_path: Path) -> None:
    async with _cluster(tmp_path) as (server, client):
        ns = f"py-{next(_names)}"
        await _serve_web(client, ns, ["10.244.1.7"])
        api = pyclient.new_client(server)
        discovery = pyclient.client.DiscoveryV1Api(api)
        slices = await asyncio.to_thread(discovery.list_namespaced_endpoint_slice, ns)
        (slice_,) = slices.items
        assert slice_.address_type == "IPv4"
        assert slice_.endpoints[0].addresses == ["10.244.1.7"]
        assert slice_.endpoints[0].conditions.ready is True
        assert slice_.endpoints[0].target_ref.name == "web-0"
        assert slice_.ports[0].port == 8080
        assert slice_.metadata.owner_references[0].kind == "Service"

        networking = pyclient.client.NetworkingV1Api(api)
        body: dict[str, Any] = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                "metadata": {"name": "allow"},
                "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}},
                                               {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.9.0/24"]}}],
                                      "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010}]}]}}
        created = await asyncio.to_thread(networking.create_namespaced_network_policy, ns, body)
        assert created.spec.policy_types == ["Ingress"]
        assert created.spec.ingress[0].ports[0].protocol == "TCP"
        assert created.spec.ingress[0]._from[1].ip_block._except == ["10.244.9.0/24"]
        listed = await asyncio.to_thread(networking.list_namespaced_network_policy, ns)
        assert [p.metadata.name for p in listed.items] == ["allow"]
        body["metadata"] = {"name": "bad"}
        body["spec"]["ingress"][0]["from"][1]["ipBlock"]["except"] = ["192.168.0.0/24"]
        with pytest.raises(pyclient.client.ApiException) as raised:
            await asyncio.to_thread(networking.create_namespaced_network_policy, ns, body)
        assert raised.value.status == 422
        assert "must be a strict subset of `cidr`" in raised.value.body

        ingress: dict[str, Any] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
                   "spec": {"ingressClassName": "istio",
                            "rules": [{"host": "web.example.com", "http": {"paths": [
                                {"path": "/", "pathType": "Prefix",
                                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}
        made = await asyncio.to_thread(networking.create_namespaced_ingress, ns, ingress)
        assert made.spec.rules[0].http.paths[0].path_type == "Prefix"
        ingress["metadata"] = {"name": "nopath"}
        ingress["spec"]["rules"][0]["http"]["paths"][0].update(path="api", pathType="Exact")
        with pytest.raises(pyclient.client.ApiException) as raised:
            await asyncio.to_thread(networking.create_namespaced_ingress, ns, ingress)
        assert 'spec.rules[0].http.paths[0].path: Invalid value: \\"api\\": must be an absolute path' \
            in raised.value.body, raised.value.body
