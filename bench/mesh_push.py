"""Config push and certificate signing: ``python bench/mesh_push.py [--proxies 500] [--changes 5] [--csrs 300]``.

Starts an apiserver and ``kubelab meshd`` as separate processes (as ``kubelab up`` runs them) and,
in this process, ``--proxies`` simulated proxies: real gRPC Discovery clients over mTLS with
workload certificates from the mesh CA, each ACKing every response (the proxies of one
Deployment share labels; ten label sets in all). Then, ``--changes`` times, one VirtualService
change (the reviews canary's weights) through the apiserver: the time from the write to each
proxy's ACK of its new routes (the informer event, the 100 ms debounce, the compile, the push
and the ACK), and that meshd recorded every ACK (``/debug/syncz`` all SYNCED). Prints
p50/p90/p99/max per change and overall (target: p99 ≤ 1 s).

Then ``--csrs`` Certify calls (pre-generated CSRs, one projected-style token with audience
``istio-ca`` per call reviewed by the apiserver, 16 in flight over TLS) and the CSRs signed per
second. Every address is on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # type: ignore[import-untyped,unused-ignore]  # noqa: E402
import grpc.aio  # type: ignore[import-untyped,unused-ignore]  # noqa: E402

from kubelab import launcher  # noqa: E402
from kubelab.testing import start_apiserver  # noqa: E402
from machinery.client import ApiClient  # noqa: E402
from machinery.resources import ENDPOINTS, ENDPOINTSLICES, SERVICES  # noqa: E402
from meshd.api.protocol import CERTIFY_METHOD, CertifyRequest, CertifyResponse, deserializer, serializer  # noqa: E402
from meshd.api.resources import PUSH_ORDER, ROUTES  # noqa: E402
from meshd.control.ca import MeshCertificateAuthority  # noqa: E402
from meshd.control.crds import DESTINATION_RULES, VIRTUAL_SERVICES  # noqa: E402
from tests.meshd.control.proxyclient import ProxyClient, make_csr, node, workload_identity  # noqa: E402


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(samples: list[float]) -> str:
    return (f"p50 {_percentile(samples, 0.5) * 1000:7.1f} ms  p90 {_percentile(samples, 0.9) * 1000:7.1f} ms  "
            f"p99 {_percentile(samples, 0.99) * 1000:7.1f} ms  max {max(samples) * 1000:7.1f} ms")


def _canary(v1: int) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": v1},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 100 - v1}]}]}}


async def _seed(client: ApiClient) -> None:
    for name, ip in (("reviews", "127.0.0.11"), ("ratings", "127.0.0.12"), ("details", "127.0.0.13")):
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                                       "spec": {"ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}},
                            namespace="default")
        await client.create(ENDPOINTSLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                             "metadata": {"name": f"{name}-1",
                                                          "labels": {"kubernetes.io/service-name": name}},
                                             "addressType": "IPv4", "endpoints": [{"addresses": [ip]}],
                                             "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]},
                            namespace="default")
    await client.create(DESTINATION_RULES, {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                                            "metadata": {"name": "reviews", "namespace": "default"},
                                            "spec": {"host": "reviews", "subsets": [
                                                {"name": "v1", "labels": {"version": "v1"}},
                                                {"name": "v2", "labels": {"version": "v2"}}]}}, namespace="default")
    await client.create(VIRTUAL_SERVICES, _canary(90), namespace="default")


def _syncz(debug_port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/debug/syncz", timeout=30) as answer:
        return list(json.loads(answer.read()))


async def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _push(args: argparse.Namespace, client: ApiClient, ca: MeshCertificateAuthority, discovery: str,
                debug_port: int) -> list[float]:
    proxies = []
    for i in range(args.proxies):
        chain, key = workload_identity(ca, "default", f"app-{i % 10}")
        proxies.append(ProxyClient(discovery, ca.root_pem, chain, key,
                                   node("default", f"app-{i % 10}-{i}", account=f"app-{i % 10}",
                                        labels={"app": f"app-{i % 10}"}), auto_ack=True))
    start = time.monotonic()
    for proxy in proxies:
        await proxy.connect()
    await _wait(lambda: all(len(p.applied) == len(PUSH_ORDER) for p in proxies), 180, "the first config")
    print(f"{args.proxies} proxies connected and configured in {time.monotonic() - start:.1f} s")
    overall: list[float] = []
    try:
        for change in range(1, args.changes + 1):
            before = [len(p.received) for p in proxies]
            versions = [p.applied[ROUTES] for p in proxies]
            written = time.monotonic()
            await client.patch(VIRTUAL_SERVICES, "reviews", _canary(90 - change), namespace="default")
            await _wait(lambda old=versions: all(p.applied[ROUTES] != v for p, v in zip(proxies, old, strict=True)),
                        60, f"change {change} at every proxy")
            latencies = []
            for proxy, seen in zip(proxies, before, strict=True):
                arrived = next(t for t, r in proxy.received[seen:] if r.type_url == ROUTES)
                latencies.append(arrived - written)
            overall += latencies
            deadline = time.monotonic() + 30
            while True:
                records = await asyncio.to_thread(_syncz, debug_port)
                synced = sum(r["types"]["routes"]["status"] == "SYNCED" for r in records)
                if synced == args.proxies or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            print(f"change {change}: {_summary(latencies)}   meshd saw {synced}/{args.proxies} ACKs")
            await asyncio.sleep(0.3)
    finally:
        for proxy in proxies:
            await proxy.close()
    return overall


async def _csrs(args: argparse.Namespace, client: ApiClient, ca: MeshCertificateAuthority, discovery: str) -> float:
    await client.request("POST", "/api/v1/namespaces/default/serviceaccounts",
                         body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench"}})
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": ["istio-ca"], "expirationSeconds": 3600}}
    token = (await client.request("POST", "/api/v1/namespaces/default/serviceaccounts/bench/token",
                                  body=body))["status"]["token"]
    csrs = [make_csr()[0] for _ in range(args.csrs)]
    creds = grpc.ssl_channel_credentials(root_certificates=ca.root_pem.encode())
    channel = grpc.aio.secure_channel(discovery, creds, options=[
        ("grpc.ssl_target_name_override", "istiod.istio-system.svc")])
    call = channel.unary_unary(CERTIFY_METHOD, request_serializer=serializer,
                               response_deserializer=deserializer(CertifyResponse))
    queue: asyncio.Queue[str] = asyncio.Queue()
    for csr in csrs:
        queue.put_nowait(csr)

    async def worker() -> None:
        while not queue.empty():
            await call(CertifyRequest(csr=queue.get_nowait(), token=token), timeout=30)

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(16)))
    elapsed = time.monotonic() - start
    await channel.close()
    return args.csrs / elapsed


async def _main(args: argparse.Namespace, state: Path) -> None:
    api = start_apiserver(state / "api")
    meshd_state = state / "meshd"
    process = launcher.start_process(state, "meshd", [*launcher.kubelab_command(), "meshd", "--kubeconfig",
                                                      str(api.kubeconfig), "--state-dir", str(meshd_state),
                                                      "--discovery-port", "0", "--webhook-port", "0",
                                                      "--debug-port", "0"], env=launcher.python_env())
    client = ApiClient.from_kubeconfig(api.kubeconfig)
    try:
        await _wait(lambda: (meshd_state / "debug.port").exists(), 60, "meshd's debug port")
        debug_port = int((meshd_state / "debug.port").read_text())

        async def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/ready", timeout=5):
                    return True
            except OSError:
                return False

        deadline = time.monotonic() + 60
        while not await ready():
            if time.monotonic() > deadline:
                raise SystemExit("meshd did not become ready")
            await asyncio.sleep(0.1)
        endpoints = await client.get(ENDPOINTS, "istiod", namespace="istio-system")
        port = next(p["port"] for p in endpoints["subsets"][0]["ports"] if p["name"] == "grpc-xds")
        discovery = f"127.0.0.1:{port}"
        ca = MeshCertificateAuthority.load_or_create(meshd_state)
        await _seed(client)
        overall = await _push(args, client, ca, discovery, debug_port)
        print(f"overall ({args.changes} changes x {args.proxies} proxies): {_summary(overall)}   "
              f"target p99 <= 1000 ms: {'met' if _percentile(overall, 0.99) <= 1.0 else 'MISSED'}")
        rate = await _csrs(args, client, ca, discovery)
        print(f"CSRs signed: {args.csrs} at {rate:.0f}/s (TokenReview + ECDSA P-256 signature each, 16 in flight)")
    finally:
        await client.close()
        launcher.stop_process(state, "meshd", grace=5.0)
        api.stop()
        del process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--proxies", type=int, default=500)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--csrs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubelab-mesh-push-") as tmp:
        asyncio.run(_main(args, Path(tmp)))


if __name__ == "__main__":
    main()
