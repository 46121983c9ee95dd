"""ServiceProxy: the generated iptables-restore text, and real netfilter inside a test-made network namespace.

The netfilter tests only ever touch a namespace ``kubelab-test-<random>`` they create and delete; they are
skipped when not root or when ``ip netns`` / iptables do not work here. The host's own tables are never
read or written.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from kubelet.network.iptables_rules import (
    ChainNames,
    build_rules,
    chains_in_save,
    render_restore,
    service_ports,
)
from kubelet.network.proxy import ServiceProxy
from machinery.client.rest import ApiClient
from machinery.resources import ENDPOINTS, SERVICES
from tests.kubelet.conftest import eventually

NAMES = ChainNames("t1")


def svc(name: str, *, ip: str = "10.96.0.10", type_: str = "ClusterIP", affinity: int | None = None,
        ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "clusterIP": ip,
                            "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if affinity is not None:
        spec["sessionAffinity"] = "ClientIP"
        if affinity:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def eps(name: str, ips: list[str], *, port: int = 8080, port_name: str = "http",
        not_ready: list[str] | None = None) -> dict[str, Any]:
    subset: dict[str, Any] = {"addresses": [{"ip": ip} for ip in ips],
                              "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
            "subsets": [subset] if ips or not_ready else []}


def restore_text(services: list[dict[str, Any]], endpoints: list[dict[str, Any]],
                 existing: dict[str, set[str]] | None = None) -> str:
    by_name = {e["metadata"]["name"]: e for e in endpoints}
    ports = [p for s in services for p in service_ports(s, by_name.get(s["metadata"]["name"]))]
    return render_restore(build_rules(ports, names=NAMES), existing=existing)


def svc_rules(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("-A KUBELAB-t1-SVC-")]


THREE = ["172.18.0.2", "172.18.0.3", "172.18.0.4"]


@pytest.mark.parametrize(("services", "endpoints", "present", "absent"), [
    pytest.param([svc("web")], [eps("web", THREE)],
                 ["--probability 0.3333333333 -j KUBELAB-t1-SEP-", "--probability 0.5000000000 -j KUBELAB-t1-SEP-",
                  "-j DNAT --to-destination 172.18.0.2:8080", "-j DNAT --to-destination 172.18.0.4:8080",
                  "-d 10.96.0.10/32 --dport 80 -j KUBELAB-t1-SVC-", "-s 172.18.0.3/32 -j KUBELAB-t1-MARK-MASQ"],
                 ["REJECT", "-m recent"], id="clusterip-3-endpoints"),
    pytest.param([svc("web")], [eps("web", ["172.18.0.2"])],
                 ["-j DNAT --to-destination 172.18.0.2:8080"], ["statistic", "REJECT"], id="single-endpoint"),
    pytest.param([svc("web", affinity=0)], [eps("web", THREE[:2])],
                 ["-m recent --name KUBELAB-t1-SEP-", "--rcheck --seconds 10800 --reap",
                  "-m recent --name KUBELAB-t1-SEP-"], [], id="clientip-affinity-default-timeout"),
    pytest.param([svc("web", affinity=60)], [eps("web", THREE[:2])],
                 ["--rcheck --seconds 60 --reap", "--set -p tcp -m tcp -j DNAT"], [], id="clientip-affinity-60s"),
    pytest.param([svc("web", type_="NodePort",
                      ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])],
                 [eps("web", THREE)],
                 ["-A KUBELAB-t1-NODEPORTS -m comment --comment \"default/web:http/tcp\" -p tcp -m tcp --dport 30080 "
                  "-j KUBELAB-t1-MARK-MASQ", "--dport 30080 -j KUBELAB-t1-SVC-",
                  "-m addrtype --dst-type LOCAL -j KUBELAB-t1-NODEPORTS"], ["REJECT"], id="nodeport"),
    pytest.param([svc("web", type_="NodePort",
                      ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])],
                 [eps("web", [], not_ready=["172.18.0.2"])],
                 ["-A KUBELAB-t1-SERVICES -m comment --comment \"default/web:http/tcp has no endpoints\" -p tcp "
                  "-m tcp -d 10.96.0.10/32 --dport 80 -j REJECT",
                  "--dst-type LOCAL -p tcp -m tcp --dport 30080 -j REJECT"],
                 ["DNAT", "KUBELAB-t1-SVC-"], id="no-ready-endpoints-reject"),
    pytest.param([svc("manual")], [], ["--dport 80 -j REJECT"], ["DNAT"], id="no-selector-no-endpoints-reject"),
    pytest.param([svc("headless", ip="None")], [eps("headless", THREE)], [], ["DNAT", "REJECT"], id="headless-skipped"),
    pytest.param([{"metadata": {"name": "ext", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "example.org"}}], [], [], ["DNAT", "REJECT"],
                 id="externalname-skipped"),
    pytest.param([svc("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP"}])],
                 [{"metadata": {"name": "dns", "namespace": "default"}, "subsets": [
                     {"addresses": [{"ip": "172.18.0.9"}],
                      "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}]}],
                 ["-p udp -m udp -d 10.96.0.10/32 --dport 53",
                  "-p udp -m udp -j DNAT --to-destination 172.18.0.9:5353"],
                 [], id="udp"),
])
def test_generated_rules(services: list[dict[str, Any]], endpoints: list[dict[str, Any]],
                         present: list[str], absent: list[str]) -> None:
    text = restore_text(services, endpoints)
    for fragment in present:
        assert fragment in text, fragment
    for fragment in absent:
        assert fragment not in text, fragment
    # only our chains are declared (flushed); built-ins never are
    declared = [line for line in text.splitlines() if line.startswith(":")]
    assert declared and all(line.startswith(":KUBELAB-t1-") for line in declared)


def test_probabilities_spread_evenly() -> None:
    rules = svc_rules(restore_text([svc("web")], [eps("web", THREE)]))
    spreads = [r for r in rules if "-j KUBELAB-t1-SEP-" in r and "recent" not in r]
    assert ["0.3333333333" in spreads[0], "0.5000000000" in spreads[1], "statistic" not in spreads[2]] == [True] * 3


def test_stale_chains_are_flushed_and_deleted() -> None:
    old = chains_in_save(restore_text([svc("web")], [eps("web", THREE)]), NAMES.prefix)
    text = restore_text([], [], existing={"nat": old, "filter": set()})
    stale = {c for c in old if "-SVC-" in c or "-SEP-" in c}
    assert len(stale) == 4
    for chain in stale:
        assert f":{chain} - [0:0]" in text and f"-X {chain}" in text


@pytest.mark.parametrize("cluster", [
    pytest.param("a", id="short"),
    pytest.param("kubelab", id="default-name-literal"),
    pytest.param("ninechars", id="nine-chars-hashed"),
    pytest.param("my-very-long-cluster-name", id="long"),
])
def test_chain_names_fit_iptables_limit(cluster: str) -> None:
    names = ChainNames(cluster)
    all_names = [names.services, names.nodeports, names.external, names.mark_masq, names.postrouting,
                 names.svc("ns/svc:port/tcp"), names.sep("ns/svc:port/tcp", "10.0.0.1:80")]
    assert all(len(n) <= 28 and n.startswith(names.prefix + "-") for n in all_names)
    assert ChainNames(cluster + "x").prefix != names.prefix
    assert (cluster in names.prefix) == (len(cluster) <= 8 and cluster.isalnum())


# -- real netfilter, in a namespace the test creates --------------------------------------------------------

def _netfilter_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables-restore"):
        return False
    name = f"kubelab-test-{secrets.token_hex(3)}"
    try:
        if subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False).returncode:
            return False
        return subprocess.run(["ip", "netns", "exec", name, "iptables", "-t", "nat", "-L"],
                              capture_output=True, check=False).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


netfilter = pytest.mark.skipif(not _netfilter_available(), reason="needs root, ip netns and iptables")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kubelab-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def ns_save(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True,
                          check=True).stdout


@netfilter
async def test_rules_load_update_and_cleanup_in_netns(netns: str) -> None:
    proxy = ServiceProxy(None, cluster="t1", node_ip="10.0.0.1", netns=netns)
    other = ServiceProxy(None, cluster="t2", node_ip="10.0.0.1", netns=netns)
    await other.apply([svc("web")], [eps("web", THREE)])
    await proxy.apply([svc("web", affinity=0), svc("gone", ip="10.96.0.11")], [eps("web", THREE)])
    await proxy.apply([svc("web", affinity=0), svc("gone", ip="10.96.0.11")], [eps("web", THREE)])  # idempotent
    saved = ns_save(netns)
    assert saved.count("-A PREROUTING -m comment --comment \"kubelab t1 service portals\"") == 1
    assert "--to-destination 172.18.0.4:8080" in saved and "-d 10.96.0.11/32" in saved
    assert "--probability 0.5" in saved and "--rcheck --seconds 10800" in saved

    await proxy.apply([svc("web")], [eps("web", THREE[:1])])  # one endpoint left, "gone" deleted
    saved = ns_save(netns)
    t1 = "\n".join(line for line in saved.splitlines() if "KUBELAB-t1" in line)
    assert "172.18.0.4" not in t1 and "10.96.0.11" not in t1 and "-m recent" not in t1
    assert len([c for c in chains_in_save(saved, "KUBELAB-t1") if "-SEP-" in c]) == 1

    proxy.cleanup()
    proxy.cleanup()  # idempotent
    saved = ns_save(netns)
    assert "KUBELAB-t1" not in saved
    assert "KUBELAB-t2-SVC-" in saved  # the other cluster is untouched
    other.cleanup()
    assert "KUBELAB" not in ns_save(netns)


_BACKENDS = textwrap.dedent("""
    import socket, sys, threading
    def serve(ip):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, 8080)); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(ip.encode()); c.close()
    for ip in sys.argv[1:]:
        threading.Thread(target=serve, args=(ip,), daemon=True).start()
    print("ready", flush=True); sys.stdin.read()
""")
_CLIENT = textwrap.dedent("""
    import socket, sys, collections, json
    seen = collections.Counter()
    for _ in range(int(sys.argv[1])):
        s = socket.create_connection(("10.96.0.10", 80), timeout=5); seen[s.recv(64).decode()] += 1; s.close()
    print(json.dumps(seen))
""")


def ns_exec(netns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, capture_output=True)


@netfilter
async def test_clusterip_traffic_spreads_over_endpoints(netns: str) -> None:
    ns_exec(netns, "ip", "link", "set", "lo", "up")
    for ip in THREE:
        ns_exec(netns, "ip", "addr", "add", f"{ip}/32", "dev", "lo")
    ns_exec(netns, "ip", "route", "add", "10.96.0.0/16", "dev", "lo")
    backends = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", _BACKENDS, *THREE],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert backends.stdout is not None and backends.stdout.readline().strip() == "ready"
        proxy = ServiceProxy(None, cluster="t1", node_ip="10.0.0.1", netns=netns)
        await proxy.apply([svc("web")], [eps("web", THREE)])
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _CLIENT, "90"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        counts = json.loads(out)
        assert set(counts) == set(THREE) and all(n >= 10 for n in counts.values()), counts
        proxy.cleanup()
    finally:
        backends.kill()
        backends.wait()


@netfilter
async def test_proxy_follows_api_objects(client: ApiClient, netns: str) -> None:
    proxy = ServiceProxy(client, cluster="t1", node_ip="10.0.0.1", netns=netns, min_sync_interval=0.05)
    task = asyncio.create_task(proxy.run(), name="test-service-proxy")
    try:
        created = await client.create(SERVICES, {"metadata": {"name": "web", "namespace": "default"},
                                                 "spec": {"ports": [{"name": "http", "port": 80}]}})
        cluster_ip = created["spec"]["clusterIP"]

        async def has(fragment: str, *, absent: str = "") -> bool:
            saved = ns_save(netns)
            return fragment in saved and not (absent and absent in saved)

        await eventually(lambda: has(f"-d {cluster_ip}/32 -p tcp -m comment --comment \"default/web:http/tcp has no "
                                     "endpoints\" -m tcp --dport 80 -j REJECT"))
        await client.create(ENDPOINTS, eps("web", THREE[:2]))
        await eventually(lambda: has("--to-destination 172.18.0.3:8080"))
        await client.delete(SERVICES, "web", namespace="default")
        await eventually(lambda: has("KUBELAB-t1-SERVICES", absent="172.18.0.3"))
    finally:
        await proxy.stop()
        await asyncio.wait_for(task, 10)
        proxy.cleanup()
    assert "KUBELAB" not in ns_save(netns)


def test_cleanup_without_iptables_is_a_no_op() -> None:
    ServiceProxy(None, cluster="t1", node_ip="10.0.0.1", iptables="kubelab-no-such-iptables").cleanup()
