"""kubelab.laptop: a cluster's default pod subnet is stable per state dir and skips subnets another
Docker network (another cluster) already holds."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from kubelab import laptop


def test_the_default_cluster_keeps_kubernetes_usual_pod_subnet() -> None:
    assert laptop.default_pod_subnet(Path.home() / ".kubelab", ["172.17.0.0/16"]) == "10.244.0.0/16"


def test_a_state_dir_always_gets_the_same_slice(tmp_path: Path) -> None:
    first = laptop.default_pod_subnet(tmp_path / "a")
    assert first == laptop.default_pod_subnet(tmp_path / "a")
    network = ipaddress.IPv4Network(first)
    assert network.prefixlen == 20 and network.subnet_of(ipaddress.IPv4Network("10.224.0.0/12"))


def test_a_slice_another_network_holds_is_skipped(tmp_path: Path) -> None:
    usual = laptop.default_pod_subnet(tmp_path / "a")
    # Another cluster's network overlapping the usual slice (wider, as a /16 would be).
    other = str(ipaddress.IPv4Network(usual).supernet(new_prefix=16))
    picked = laptop.default_pod_subnet(tmp_path / "a", [other, "172.17.0.0/16"])
    assert not ipaddress.IPv4Network(picked).overlaps(ipaddress.IPv4Network(other))
    assert ipaddress.IPv4Network(picked).subnet_of(ipaddress.IPv4Network("10.224.0.0/12"))
    assert laptop.default_pod_subnet(tmp_path / "a", ["172.17.0.0/16", "fd00::/64"]) == usual
