"""The mesh on real Docker pods with the real kubectl: the seed's flow and what makes a mesh trustworthy.

One ``kubelab up --nodes 2`` cluster (meshd under the supervisor, leaves capped at
:data:`LEAF_SECONDS` so sidecars rotate during the module) runs every workload:

* ``seed`` -- labelled ``istio-injection=enabled`` with ``kubectl label``; an ``nginx-demo``
  Deployment gets ``istio-init`` and ``istio-proxy`` and becomes Ready 2/2;
* ``mesh`` -- ``reviews`` v1/v2 behind one Service (the productpage-style canary and the NACK),
  ``ratings`` (fault injection), ``tcp-echo`` (server-first TCP), a meshed client ``sleep``;
* ``secure`` -- ``httpbin`` under PeerAuthentication STRICT / PERMISSIVE, a meshed ``sleep``, an
  unmeshed ``legacy`` and an ``intruder`` holding a certificate from a foreign CA.

Requests come from :data:`tests.e2e.mesh_harness.LOAD_PY` run inside the client pods, so they
cross the client's sidecar (iptables capture, outbound routing) and the server's sidecar (mTLS,
inbound).
"""

from __future__ import annotations

import datetime
import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelab.images import NGINX, PYTHON
from tests.e2e.mesh_harness import (
    SERVER_PY,
    TCP_ECHO_PY,
    WAIT,
    MeshCluster,
    client_pod,
    mesh_cluster,
    meshd_short_leaves,
    namespace,
    python_deployment,
    service,
    service_account,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

LEAF_SECONDS = 40
"""The longest leaf meshd signs in this module: sidecars rotate about every 20 s."""
MESH, SECURE, SEED = "mesh", "secure", "seed"


def _destination_rule(host: str, ns: str, versions: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": host, "namespace": ns},
            "spec": {"host": host, "subsets": [{"name": v, "labels": {"version": v}} for v in versions]}}


def _virtual_service(host: str, ns: str, http: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": host, "namespace": ns}, "spec": {"hosts": [host], "http": http}}


def _route(host: str, subset: str, weight: int | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        route["weight"] = weight
    return route


def _foreign_certificate() -> tuple[str, str]:
    """A leaf with a mesh-looking SPIFFE ID, signed by a CA the mesh never heard of (PEM cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "foreign")])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                f"spiffe://cluster.local/ns/{SECURE}/sa/sleep")]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return leaf.public_bytes(serialization.Encoding.PEM).decode(), key.decode()


INTRUDER_PY = r"""
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.load_cert_chain("/foreign/tls.crt", "/foreign/tls.key")
context.set_alpn_protocols(["istio", "istio-http/1.1"])
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /xfcc HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n\r\n")
            answer = tls.recv(4096)
    print("ANSWER " + answer.decode(errors="replace").splitlines()[0] if answer else "CLOSED")
except (OSError, ssl.SSLError) as exc:
    print("REFUSED " + repr(exc))
"""

FIRST_REQUEST_PY = r"""
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:15021/healthz/ready", timeout=5).status)
print(urllib.request.urlopen("http://reviews:9080/", timeout=10).read().decode().strip())
"""

TCP_CLIENT_PY = r"""
import json, socket, sys, time
started = time.monotonic()
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as conn:
    lines = conn.makefile("rb")
    greeting = lines.readline().decode().strip()
    first = time.monotonic() - started
    conn.sendall(b"ping\n")
    echo = lines.readline().decode().strip()
print(json.dumps({"greeting": greeting, "first": first, "echo": echo}))
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[MeshCluster]:
    with mesh_cluster(tmp_path_factory.mktemp("mesh"), docker_client) as m:
        meshd_short_leaves(m, LEAF_SECONDS)
        cert, key = _foreign_certificate()
        m.kubectl("create", "namespace", SEED)
        m.apply(
            namespace(MESH), namespace(SECURE),
            service_account("sleep", MESH), service_account("sleep", SECURE),
            python_deployment("reviews-v1", MESH, SERVER_PY, labels={"app": "reviews", "version": "v1"},
                              env={"VERSION": "v1"}),
            python_deployment("reviews-v2", MESH, SERVER_PY, labels={"app": "reviews", "version": "v2"},
                              env={"VERSION": "v2"}),
            service("reviews", MESH, 9080, 8080),
            python_deployment("ratings", MESH, SERVER_PY, labels={"app": "ratings", "version": "v1"},
                              env={"VERSION": "ratings-v1"}),
            service("ratings", MESH, 9080, 8080),
            python_deployment("tcp-echo", MESH, TCP_ECHO_PY, labels={"app": "tcp-echo"}, port=9000, probe=False),
            service("tcp-echo", MESH, 9000, 9000, port_name="tcp"),
            client_pod("sleep", MESH, account="sleep"),
            python_deployment("httpbin", SECURE, SERVER_PY, labels={"app": "httpbin"}, env={"VERSION": "httpbin"}),
            service("httpbin", SECURE, 8000, 8080),
            client_pod("sleep", SECURE, account="sleep"),
            client_pod("legacy", SECURE, injected=False),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreign", "namespace": SECURE},
             "type": "kubernetes.io/tls", "stringData": {"tls.crt": cert, "tls.key": key}},
            client_pod("intruder", SECURE, injected=False,
                       volumes=[{"name": "foreign", "secret": {"secretName": "foreign"}}],
                       mounts=[{"name": "foreign", "mountPath": "/foreign"}]),
        )
        yield m


def _sidecar_names(pod: dict[str, Any]) -> tuple[list[str], list[str]]:
    return ([c["name"] for c in pod["spec"].get("initContainers") or []],
            [c["name"] for c in pod["spec"]["containers"]])


def _wait_routes_acked(mesh: MeshCluster, pod: str, before: str) -> None:
    """Wait until ``pod``'s proxy ACKed a routes version other than ``before``."""
    def acked() -> bool:
        record = mesh.proxy_record(pod)
        routes = (record or {}).get("types", {}).get("routes", {})
        return bool(routes.get("status") == "SYNCED" and routes.get("ackedVersion") not in ("", before))
    wait_for(acked, WAIT, f"{pod} to ACK new routes")


def _routes_version(mesh: MeshCluster, pod: str) -> str:
    record = mesh.wait_synced([pod])[pod]
    return str(record["types"]["routes"].get("ackedVersion", ""))


def _within_3_sigma(hits: int, n: int, p: float) -> bool:
    return abs(hits - n * p) <= 3 * math.sqrt(n * p * (1 - p))


def test_seed_flow_injects_istio_init_and_proxy(mesh: MeshCluster) -> None:
    mesh.kubectl("label", "namespace", SEED, "istio-injection=enabled")
    mesh.kubectl("create", "deployment", "nginx-demo", f"--image={NGINX}", "--port=80", "-n", SEED)
    pod = mesh.wait_ready(SEED, "app=nginx-demo")[0]
    name = pod["metadata"]["name"]
    jsonpath = mesh.kubectl("get", "pod", name, "-n", SEED, "-o",
                            "jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}").stdout
    assert jsonpath.split() == ["istio-init", "istio-proxy", "nginx"], jsonpath
    _, containers = _sidecar_names(pod)
    proxy = next(c for c in pod["spec"]["initContainers"] if c["name"] == "istio-proxy")
    assert proxy["restartPolicy"] == "Always", "istio-proxy is a native sidecar"
    assert containers == ["nginx"]
    table = mesh.kubectl("get", "pod", name, "-n", SEED).stdout
    assert re.search(rf"{name}\s+2/2\s+Running", table), table
    listing = mesh.cluster.kubelab("mesh", "proxy-status").stdout
    assert re.search(rf"{name}\s+{SEED}\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED", listing), listing


def test_app_starts_after_its_proxy_and_a_job_with_a_sidecar_completes(mesh: MeshCluster) -> None:
    mesh.wait_ready(MESH, "app=reviews", count=2)
    # The app's very first action goes through the mesh: it works only if the proxy is ready.
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "first-request", "namespace": MESH},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
               "name": "app", "image": PYTHON, "command": ["python3", "-c", FIRST_REQUEST_PY]}]}}}}
    mesh.apply(job)
    def finished() -> str | None:
        conditions = mesh.cluster.json("get", "job", "first-request", "-n", MESH)["status"].get("conditions") or []
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"),
                    None)
    outcome = wait_for(finished, WAIT, "the Job to finish")
    assert outcome == "Complete", mesh.kubectl("describe", "job", "first-request", "-n", MESH).stdout
    pod = mesh.pods(MESH, "job-name=first-request")[0]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["istio-init", "istio-proxy"]
    assert pod["status"]["phase"] == "Succeeded"
    logs = mesh.kubectl("logs", pod["metadata"]["name"], "-n", MESH, "-c", "app").stdout
    assert re.fullmatch(r"200\nv[12]\n", logs), logs
    proxy = next(s for s in pod["status"]["initContainerStatuses"] if s["name"] == "istio-proxy")
    assert "terminated" in proxy["state"], "the sidecar is stopped once the Job's app is done"


def test_canary_90_10_over_2000_requests(mesh: MeshCluster) -> None:
    mesh.wait_ready(MESH, "app=reviews", count=2)
    mesh.wait_ready(MESH, "app=sleep")
    before = _routes_version(mesh, "sleep")
    mesh.apply(_destination_rule("reviews", MESH, ["v1", "v2"]),
               _virtual_service("reviews", MESH, [{"route": [_route("reviews", "v1", 90),
                                                              _route("reviews", "v2", 10)]}]))
    _wait_routes_acked(mesh, "sleep", before)
    n = 2000
    result = mesh.load("sleep", MESH, host="reviews", port=9080, count=n, conns=4)
    assert result["failures"] == 0, result["firstFailures"]
    assert result["codes"] == {"200": n}
    v2 = result["bodies"].get("v2", 0)
    assert result["bodies"].get("v1", 0) + v2 == n, result["bodies"]
    assert _within_3_sigma(v2, n, 0.10), f"v2 got {v2} of {n} (expected 10 % +- 3 sigma)"


def test_fault_injection_for_one_user_and_a_share(mesh: MeshCluster) -> None:
    mesh.wait_ready(MESH, "app=ratings")
    mesh.wait_ready(MESH, "app=sleep")
    before = _routes_version(mesh, "sleep")
    mesh.apply(_destination_rule("ratings", MESH, ["v1"]), _virtual_service("ratings", MESH, [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "fault": {"delay": {"fixedDelay": "2s", "percentage": {"value": 100.0}}},
         "route": [_route("ratings", "v1")]},
        {"match": [{"headers": {"end-user": {"exact": "kim"}}}],
         "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 50.0}}},
         "route": [_route("ratings", "v1")]},
        {"route": [_route("ratings", "v1")]}]))
    _wait_routes_acked(mesh, "sleep", before)

    jason = mesh.load("sleep", MESH, host="ratings", port=9080, count=6, conns=2,
                      headers={"end-user": "jason"}, latencies=True)
    assert jason["codes"] == {"200": 6}, jason
    assert min(jason["latencies"]) >= 1.9, jason["latencies"]
    assert max(jason["latencies"]) < 6, jason["latencies"]

    n = 400
    kim = mesh.load("sleep", MESH, host="ratings", port=9080, count=n, conns=4, headers={"end-user": "kim"})
    aborted = kim["codes"].get("500", 0)
    assert aborted + kim["codes"].get("200", 0) == n, kim
    assert _within_3_sigma(aborted, n, 0.5), f"{aborted} of {n} aborted (expected 50 % +- 3 sigma)"

    others = mesh.load("sleep", MESH, host="ratings", port=9080, count=200, conns=4,
                       headers={"end-user": "mary"}, latencies=True)
    assert others["codes"] == {"200": 200}, others
    assert sorted(others["latencies"])[int(0.9 * 200)] < 1.0, "other users are not delayed"

    # The seed's other variant: jason's requests aborted with HTTP 500 at 100 %.
    before = _routes_version(mesh, "sleep")
    mesh.apply(_virtual_service("ratings", MESH, [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
         "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100.0}}},
         "route": [_route("ratings", "v1")]},
        {"route": [_route("ratings", "v1")]}]))
    _wait_routes_acked(mesh, "sleep", before)
    jason = mesh.load("sleep", MESH, host="ratings", port=9080, count=50, conns=2, headers={"end-user": "jason"})
    assert jason["codes"] == {"500": 50}, jason
    others = mesh.load("sleep", MESH, host="ratings", port=9080, count=50, conns=2)
    assert others["codes"] == {"200": 50}, others


def test_server_first_tcp_through_the_mesh(mesh: MeshCluster) -> None:
    mesh.wait_ready(MESH, "app=sleep")
    wait_for(lambda: mesh.pods(MESH, "app=tcp-echo") and all(
        c.get("ready") for p in mesh.pods(MESH, "app=tcp-echo") for c in p["status"].get("containerStatuses") or [{}]),
        WAIT, "tcp-echo running")
    mesh.wait_synced(["sleep"])
    answers = [json.loads(mesh.python("sleep", MESH, TCP_CLIENT_PY, "tcp-echo", "9000")) for _ in range(3)]
    for answer in answers:
        assert answer["greeting"] == "hello from tcp-echo", answer
        assert answer["echo"] == "ping", answer
    assert min(a["first"] for a in answers) < 0.5, f"the server's greeting waited: {answers}"


def test_peer_authentication_strict_permissive_and_a_foreign_ca(mesh: MeshCluster) -> None:
    server = mesh.wait_ready(SECURE, "app=httpbin")[0]
    mesh.wait_ready(SECURE, "app=sleep")
    mesh.wait_ready(SECURE, "app=legacy")
    mesh.wait_ready(SECURE, "app=intruder")
    legacy = mesh.pods(SECURE, "app=legacy")[0]
    assert [c["name"] for c in legacy["spec"].get("initContainers") or []] == [], "legacy has no sidecar"

    def peer_authentication(mode: str) -> dict[str, Any]:
        return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": SECURE}, "spec": {"mtls": {"mode": mode}}}

    def legacy_gets() -> bool:
        done = mesh.exec("legacy", SECURE, "python3", "-c", "import urllib.request as u; "
                         "print(u.urlopen('http://httpbin:8000/', timeout=5).read().decode())", check=False)
        return done.returncode == 0 and "httpbin" in done.stdout

    mesh.apply(peer_authentication("STRICT"))
    wait_for(lambda: not legacy_gets(), WAIT, "STRICT to refuse a pod without a sidecar")
    meshed = mesh.load("sleep", SECURE, host="httpbin", port=8000, path="/xfcc", count=20, conns=1)
    assert meshed["failures"] == 0 and meshed["codes"] == {"200": 20}, meshed
    (xfcc,) = meshed["bodies"]
    assert f"URI=spiffe://cluster.local/ns/{SECURE}/sa/sleep" in xfcc, xfcc
    assert f"By=spiffe://cluster.local/ns/{SECURE}/sa/default" in xfcc, xfcc

    ip = server["status"]["podIP"]
    intruder = mesh.python("intruder", SECURE, INTRUDER_PY, ip, "8080")
    assert not intruder.startswith("ANSWER"), f"a foreign CA's certificate was accepted: {intruder}"

    mesh.apply(peer_authentication("PERMISSIVE"))
    wait_for(legacy_gets, WAIT, "PERMISSIVE to accept a pod without a sidecar")
    meshed = mesh.load("sleep", SECURE, host="httpbin", port=8000, path="/xfcc", count=20, conns=1)
    assert meshed["codes"] == {"200": 20}, meshed
    assert f"URI=spiffe://cluster.local/ns/{SECURE}/sa/sleep" in next(iter(meshed["bodies"]))
    intruder = mesh.python("intruder", SECURE, INTRUDER_PY, ip, "8080")
    assert not intruder.startswith("ANSWER HTTP/1.1 200"), f"a foreign CA's certificate was accepted: {intruder}"


def _rotations(mesh: MeshCluster, pod: str, ns: str) -> int:
    logs = mesh.kubectl("logs", pod, "-n", ns, "-c", "istio-proxy").stdout
    return len(re.findall(r"workload certificate for \S+ valid until", logs))


@pytest.mark.exclusive
def test_rotation_and_meshd_kill_under_load(mesh: MeshCluster) -> None:
    mesh.wait_ready(MESH, "app=reviews", count=2)
    mesh.wait_ready(MESH, "app=sleep")
    server = mesh.pods(MESH, "app=reviews,version=v1")[0]["metadata"]["name"]
    rotated = _rotations(mesh, "sleep", MESH), _rotations(mesh, server, MESH)
    window = LEAF_SECONDS * 1.2
    result = mesh.load("sleep", MESH, host="reviews", port=9080, seconds=window, conns=2)
    assert result["failures"] == 0, result["firstFailures"]
    assert result["requests"] > 100 and set(result["codes"]) == {"200"}, result["codes"]
    after = _rotations(mesh, "sleep", MESH), _rotations(mesh, server, MESH)
    assert after[0] > rotated[0] and after[1] > rotated[1], f"no rotation during the load: {rotated} -> {after}"
    assert after[0] - rotated[0] <= 4, f"rotation at half-life, not in a loop: {rotated} -> {after}"

    with mesh.load_in_background("sleep", MESH, host="reviews", port=9080, seconds=20, conns=2) as summary:
        time.sleep(3)  # the load runs before meshd is killed
        killed = mesh.kill_meshd()
        mesh.wait_meshd_back(killed)
        result = summary()
    assert result["failures"] == 0, result["firstFailures"]
    assert result["requests"] > 50 and set(result["codes"]) == {"200"}, result["codes"]
    records = mesh.wait_synced(["sleep", server])
    assert records["sleep"]["connectedAt"] > time.time() - WAIT


def test_a_config_the_proxy_cannot_apply_is_nacked(mesh: MeshCluster) -> None:
    mesh.wait_ready(MESH, "app=reviews", count=2)
    mesh.wait_ready(MESH, "app=sleep")
    before = _routes_version(mesh, "sleep")
    mesh.apply(_destination_rule("reviews", MESH, ["v1", "v2"]),
               _virtual_service("reviews", MESH, [{"route": [_route("reviews", "v2")]}]))
    _wait_routes_acked(mesh, "sleep", before)
    assert mesh.load("sleep", MESH, host="reviews", port=9080, count=20, conns=1)["bodies"] == {"v2": 20}

    # RE2's Unicode classes pass the webhook (Istio accepts them) but Python's re refuses them.
    mesh.apply(_virtual_service("reviews", MESH, [
        {"match": [{"headers": {"end-user": {"regex": r"\p{L}+"}}}], "route": [_route("reviews", "v1")]},
        {"route": [_route("reviews", "v2")]}]))

    def nacked() -> dict[str, Any] | None:
        record = mesh.proxy_record("sleep") or {}
        routes = record.get("types", {}).get("routes", {})
        return routes if routes.get("status") == "NACKED" else None
    routes = wait_for(nacked, WAIT, "the sleep proxy to NACK the routes")
    assert routes["nackMessage"], routes
    table = mesh.cluster.kubelab("mesh", "proxy-status").stdout
    assert re.search(r"sleep\s+mesh\s+\S+\s+NACKED \(", table), table

    # The old routing stays in force: everything still goes to v2.
    result = mesh.load("sleep", MESH, host="reviews", port=9080, count=20, conns=1, headers={"end-user": "jason"})
    assert result["bodies"] == {"v2": 20}, result

    def described() -> str | None:
        text = str(mesh.kubectl("describe", "virtualservice", "reviews", "-n", MESH).stdout)
        return text if "ProxyRejectedConfig" in text else None
    text = wait_for(described, WAIT, "the NACK on the VirtualService's events")
    assert "invalid regular expression" in text and "Accepted" in text, text
    vs = mesh.cluster.json("get", "virtualservice", "reviews", "-n", MESH)
    conditions = {c["type"]: c for c in (vs.get("status") or {}).get("conditions") or []}
    accepted = conditions.get("Accepted", {})
    assert accepted.get("status") == "False" and "rejected RouteConfig" in accepted.get("message", ""), vs.get("status")

    # Fixed: SYNCED again and routing follows.
    mesh.apply(_virtual_service("reviews", MESH, [{"route": [_route("reviews", "v1")]}]))
    mesh.wait_synced(["sleep"])
    wait_for(lambda: mesh.load("sleep", MESH, host="reviews", port=9080, count=10, conns=1)["bodies"] == {"v1": 10},
             WAIT, "the fixed VirtualService to route to v1")
    mesh.kubectl("delete", "virtualservice", "reviews", "-n", MESH)
