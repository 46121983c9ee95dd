"""The pod IP allocator of a node's pod CIDR (kubelet.network.ipam): range, round robin, rebuild, exhaustion."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from kubelet.network.ipam import FOREIGN_OWNER, PodCIDRExhaustedError, PodIPAllocator
from kubelet.runtime.interface import RuntimeError_


@pytest.mark.parametrize(("cidr", "first", "last", "capacity"), [
    pytest.param("10.244.1.0/24", "10.244.1.1", "10.244.1.254", 254, id="slash-24"),
    pytest.param("10.244.3.0/29", "10.244.3.1", "10.244.3.6", 6, id="slash-29"),
    pytest.param("10.0.0.4/30", "10.0.0.5", "10.0.0.6", 2, id="slash-30"),
])
def test_range_skips_network_and_broadcast(cidr: str, first: str, last: str, capacity: int) -> None:
    allocator = PodIPAllocator(cidr)
    assert allocator.capacity == capacity
    assert allocator.range_text == f"{first}-{last}"
    handed = [allocator.allocate(f"pod-{i}") for i in range(capacity)]
    assert handed[0] == first and handed[-1] == last
    assert len(set(handed)) == capacity
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(cidr) for ip in handed)


@pytest.mark.parametrize("cidr", [
    pytest.param("10.0.0.0/31", id="no-room"),
    pytest.param("fd00::/64", id="ipv6"),
    pytest.param("10.0.0.0/33", id="malformed"),
])
def test_unusable_cidrs_are_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        PodIPAllocator(cidr)


def test_same_owner_keeps_its_address() -> None:
    allocator = PodIPAllocator("10.244.1.0/24")
    first = allocator.allocate("uid-a")
    allocator.allocate("uid-b")
    assert allocator.allocate("uid-a") == first


def test_released_address_is_reused_last() -> None:
    allocator = PodIPAllocator("10.244.1.0/29")  # .1 .. .6
    a, b = allocator.allocate("a"), allocator.allocate("b")
    assert (a, b) == ("10.244.1.1", "10.244.1.2")
    assert allocator.release("a") == "10.244.1.1"
    assert [allocator.allocate(o) for o in ("c", "d", "e", "f")] == [f"10.244.1.{i}" for i in (3, 4, 5, 6)]
    assert allocator.allocate("g") == "10.244.1.1"  # wrapped around to the one free address


def test_release_of_an_unknown_owner_is_a_no_op() -> None:
    allocator = PodIPAllocator("10.244.1.0/30")
    assert allocator.release("nobody") is None
    assert allocator.in_use() == {}


def test_exhaustion_raises_a_runtime_error_naming_the_range_and_changes_nothing() -> None:
    allocator = PodIPAllocator("10.244.7.0/30")
    allocator.allocate("a")
    allocator.allocate("b")
    before = allocator.in_use()
    with pytest.raises(PodCIDRExhaustedError) as caught:
        allocator.allocate("c")
    assert isinstance(caught.value, RuntimeError_)
    assert "no IP addresses available" in str(caught.value)
    assert "10.244.7.0/30" in str(caught.value) and "10.244.7.1-10.244.7.2" in str(caught.value)
    assert allocator.in_use() == before
    allocator.release("a")
    assert allocator.allocate("c") == "10.244.7.1"


def test_rebuild_keeps_running_pods_addresses() -> None:
    """A restarted kubelet reserves what runs before handing out anything new."""
    allocator = PodIPAllocator("10.244.1.0/29")
    assert allocator.reserve("running-1", "10.244.1.1")
    assert allocator.reserve("running-2", "10.244.1.3")
    handed = {allocator.allocate(f"new-{i}") for i in range(4)}
    assert handed == {"10.244.1.2", "10.244.1.4", "10.244.1.5", "10.244.1.6"}
    with pytest.raises(PodCIDRExhaustedError):
        allocator.allocate("one-too-many")


@pytest.mark.parametrize(("owner", "ip", "expected"), [
    pytest.param("other", "10.244.1.1", False, id="held-by-another-pod"),
    pytest.param("holder", "10.244.1.1", True, id="same-owner-same-address"),
    pytest.param("holder", "10.244.1.2", False, id="second-address-for-an-owner"),
    pytest.param("x", "10.244.2.1", False, id="outside-the-range"),
    pytest.param("x", "10.244.1.0", False, id="network-address"),
    pytest.param("x", "10.244.1.7", False, id="broadcast-address"),
    pytest.param("x", "not-an-ip", False, id="garbage"),
    pytest.param(FOREIGN_OWNER, "10.244.1.1", False, id="foreign-on-a-pod-address"),
    pytest.param(FOREIGN_OWNER, "10.244.1.4", True, id="foreign-on-a-free-address"),
])
def test_reserve(owner: str, ip: str, expected: bool) -> None:
    allocator = PodIPAllocator("10.244.1.0/29")
    assert allocator.reserve("holder", "10.244.1.1")
    assert allocator.reserve(owner, ip) is expected
    assert allocator.allocate("holder") == "10.244.1.1"


def test_foreign_addresses_are_skipped_until_they_go() -> None:
    allocator = PodIPAllocator("10.244.1.0/30")
    allocator.set_foreign(["10.244.1.1", "10.9.9.9"])  # one outside the range: ignored
    assert allocator.in_use() == {"10.244.1.1": FOREIGN_OWNER}
    assert allocator.allocate("a") == "10.244.1.2"
    with pytest.raises(PodCIDRExhaustedError):
        allocator.allocate("b")
    allocator.set_foreign([])
    assert allocator.allocate("b") == "10.244.1.1"


def test_foreign_set_never_covers_a_pod_address() -> None:
    allocator = PodIPAllocator("10.244.1.0/30")
    mine = allocator.allocate("a")
    allocator.set_foreign([mine])
    assert allocator.in_use() == {mine: "a"}


def test_concurrent_allocations_never_share_an_address() -> None:
    allocator = PodIPAllocator("10.244.0.0/22")
    results: list[str] = []
    lock = threading.Lock()

    def worker(base: int) -> None:
        for i in range(100):
            ip = allocator.allocate(f"pod-{base}-{i}")
            with lock:
                results.append(ip)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 800 and len(set(results)) == 800
