"""ClusterDNS against the real apiserver embedded in the test loop, queried over UDP/TCP on 127.0.0.1.

No query ever leaves the machine: the cluster DNS runs with ``upstream=None`` except in the forwarding
test, whose upstream is a second ClusterDNS on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from kubelet.network.dns import ClusterDNS, host_upstream, resolv_conf_for_pod
from machinery.client.rest import ApiClient
from machinery.resources import ENDPOINTS, SERVICES


async def query(dns: ClusterDNS, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    host, port = dns.address
    question = DNSRecord.question(name, qtype)
    raw = await asyncio.to_thread(question.send, host, port, tcp=tcp, timeout=5)
    return DNSRecord.parse(raw)


def answers(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


def endpoints(name: str, ready: list[dict[str, Any]], not_ready: list[str] | None = None,
              port: int = 8080) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "subsets": [{
        "addresses": ready, "notReadyAddresses": [{"ip": ip} for ip in not_ready or []],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]}


@pytest.fixture
async def cluster(client: ApiClient) -> AsyncIterator[tuple[ClusterDNS, str]]:
    """A ClusterDNS with services ``web`` (ClusterIP), ``db`` (headless) and ``ext`` (ExternalName)."""
    web = await client.create(SERVICES, {"metadata": {"name": "web", "namespace": "default"},
                                         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    await client.create(SERVICES, {"metadata": {"name": "db", "namespace": "default"},
                                   "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    await client.create(ENDPOINTS, endpoints("db", [{"ip": "172.18.0.5", "hostname": "db-0"}, {"ip": "172.18.0.6"}],
                                             not_ready=["172.18.0.7"]))
    await client.create(SERVICES, {"metadata": {"name": "ext", "namespace": "default"},
                                   "spec": {"type": "ExternalName", "externalName": "example.org"}})
    dns = ClusterDNS(client, listen=("127.0.0.1", 0), upstream=None)
    await dns.start()
    try:
        yield dns, web["spec"]["clusterIP"]
    finally:
        await dns.stop()


@pytest.mark.parametrize(("name", "qtype", "rcode", "expected"), [
    pytest.param("web.default.svc.cluster.local", "A", "NOERROR", ["<web>"], id="clusterip"),
    pytest.param("WEB.Default.SVC.cluster.local.", "A", "NOERROR", ["<web>"], id="case-insensitive"),
    pytest.param("db.default.svc.cluster.local", "A", "NOERROR", ["172.18.0.5", "172.18.0.6"],
                 id="headless-ready-endpoints-only"),
    pytest.param("db-0.db.default.svc.cluster.local", "A", "NOERROR", ["172.18.0.5"], id="headless-hostname"),
    pytest.param("172-18-0-6.db.default.svc.cluster.local", "A", "NOERROR", ["172.18.0.6"], id="headless-dashed-ip"),
    pytest.param("ext.default.svc.cluster.local", "A", "NOERROR", ["example.org."], id="externalname-cname"),
    pytest.param("_http._tcp.web.default.svc.cluster.local", "SRV", "NOERROR",
                 ["0 100 80 web.default.svc.cluster.local."], id="srv-clusterip"),
    pytest.param("_http._tcp.db.default.svc.cluster.local", "SRV", "NOERROR",
                 ["0 100 8080 172-18-0-6.db.default.svc.cluster.local.",
                  "0 100 8080 db-0.db.default.svc.cluster.local."],
                 id="srv-headless"),
    pytest.param("_nope._tcp.web.default.svc.cluster.local", "SRV", "NXDOMAIN", [], id="srv-unknown-port"),
    pytest.param("10-1-2-3.default.pod.cluster.local", "A", "NOERROR", ["10.1.2.3"], id="pod"),
    pytest.param("web.default.svc.cluster.local", "AAAA", "NOERROR", [], id="nodata-for-other-type"),
    pytest.param("missing.default.svc.cluster.local", "A", "NXDOMAIN", [], id="missing-service"),
    pytest.param("web.other.svc.cluster.local", "A", "NXDOMAIN", [], id="other-namespace"),
    # what a pod's resolver tries for "web.default.svc.cluster.local" with ndots:5 before the bare name
    pytest.param("web.default.svc.cluster.local.default.svc.cluster.local", "A", "NXDOMAIN", [],
                 id="search-path-expanded"),
    pytest.param("web.default.svc.cluster.local.cluster.local", "A", "NXDOMAIN", [], id="search-path-domain"),
    pytest.param("not-an-ip.default.pod.cluster.local", "A", "NXDOMAIN", [], id="bad-pod-name"),
    pytest.param("cluster.local", "A", "NXDOMAIN", [], id="zone-apex"),
    pytest.param("example.org", "A", "REFUSED", [], id="outside-domain-no-upstream"),
])
async def test_records(cluster: tuple[ClusterDNS, str], name: str, qtype: str, rcode: str,
                       expected: list[str]) -> None:
    dns, web_ip = cluster
    reply = await query(dns, name, qtype)
    assert RCODE[reply.header.rcode] == rcode
    assert answers(reply) == sorted(web_ip if e == "<web>" else e for e in expected)
    if rcode == "NXDOMAIN":
        assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]


async def test_search_path_resolution_of_short_name(cluster: tuple[ClusterDNS, str]) -> None:
    """A pod in ``default`` resolving ``web``: the first search candidate answers."""
    dns, web_ip = cluster
    config = resolv_conf_for_pod("default", dns.address[0])
    results = [await query(dns, f"web.{suffix}") for suffix in config.searches]
    assert [answers(r) for r in results] == [[web_ip], [], []]
    assert [RCODE[r.header.rcode] for r in results] == ["NOERROR", "NXDOMAIN", "NXDOMAIN"]


async def test_tcp_query(cluster: tuple[ClusterDNS, str]) -> None:
    dns, web_ip = cluster
    reply = await query(dns, "web.default.svc.cluster.local", tcp=True)
    assert answers(reply) == [web_ip]


async def test_records_follow_api_changes(client: ApiClient, cluster: tuple[ClusterDNS, str]) -> None:
    dns, _ = cluster
    await client.create(SERVICES, {"metadata": {"name": "late", "namespace": "default"},
                                   "spec": {"ports": [{"port": 80}]}})
    for _ in range(100):
        if RCODE[(await query(dns, "late.default.svc.cluster.local")).header.rcode] == "NOERROR":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("new service never resolved")
    await client.delete(SERVICES, "late", namespace="default")
    for _ in range(100):
        if RCODE[(await query(dns, "late.default.svc.cluster.local")).header.rcode] == "NXDOMAIN":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("deleted service still resolves")


async def test_forwards_only_to_configured_upstream(client: ApiClient) -> None:
    await client.create(SERVICES, {"metadata": {"name": "up", "namespace": "default"},
                                   "spec": {"ports": [{"port": 80}]}})
    upstream = ClusterDNS(client, listen=("127.0.0.1", 0), domain="upstream.test")
    await upstream.start()
    dns = ClusterDNS(client, listen=("127.0.0.1", 0), upstream=upstream.address)
    await dns.start()
    try:
        for tcp in (False, True):
            reply = await query(dns, "up.default.svc.upstream.test", tcp=tcp)
            assert RCODE[reply.header.rcode] == "NOERROR" and len(reply.rr) == 1
            reply = await query(dns, "nothing.upstream.test", tcp=tcp)
            assert RCODE[reply.header.rcode] == "NXDOMAIN"
    finally:
        await dns.stop()
        await upstream.stop()


async def test_unanswered_upstream_gives_servfail(client: ApiClient) -> None:
    silent = await asyncio.get_running_loop().create_datagram_endpoint(asyncio.DatagramProtocol,
                                                                        local_addr=("127.0.0.1", 0))
    dns = ClusterDNS(client, listen=("127.0.0.1", 0), upstream=silent[0].get_extra_info("sockname"))
    await dns.start()
    try:
        reply = await query(dns, "anything.test")
        assert RCODE[reply.header.rcode] == "SERVFAIL"
    finally:
        await dns.stop()
        silent[0].close()


@pytest.mark.parametrize(("namespace", "domain", "text"), [
    pytest.param("default", "cluster.local",
                 "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
                 "options ndots:5\n", id="default"),
    pytest.param("team-a", "lab.local",
                 "search team-a.svc.lab.local svc.lab.local lab.local\nnameserver 10.96.0.10\noptions ndots:5\n",
                 id="custom-domain"),
])
def test_resolv_conf_for_pod(namespace: str, domain: str, text: str) -> None:
    config = resolv_conf_for_pod(namespace, "10.96.0.10", domain)
    assert config.to_text() == text
    assert config.nameservers == ("10.96.0.10",) and config.options == ("ndots:5",)


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param("# x\nsearch lan\nnameserver 127.0.0.53\nnameserver 127.0.0.54\n", ("127.0.0.53", 53), id="first"),
    pytest.param("nameserver ::1\nnameserver 127.0.0.53\n", ("127.0.0.53", 53), id="skip-ipv6"),
    pytest.param("nameserver 192.168.1.1\nnameserver 10.255.255.53\n", None, id="off-machine-refused"),
    pytest.param("nameserver 10.0.0.2\nnameserver 127.0.0.53\n", ("127.0.0.53", 53), id="loopback-after-remote"),
    pytest.param("search lan\n", None, id="none"),
])
def test_host_upstream(tmp_path: Path, content: str, expected: tuple[str, int] | None) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(content)
    assert host_upstream(path) == expected
    assert host_upstream(tmp_path / "missing") is None
