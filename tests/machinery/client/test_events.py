"""EventRecorder against the real apiserver: Event fields, correlation of repeats."""

from __future__ import annotations

from typing import Any

import pytest

from machinery.client.events import EventRecorder
from machinery.client.rest import ApiClient
from machinery.resources import EVENTS, NODES, PODS
from tests.machinery.client.conftest import pod


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def events_about(client: ApiClient, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    items = (await client.list(EVENTS, namespace=namespace))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


async def test_event_has_kubernetes_fields(client: ApiClient) -> None:
    p = await client.create(PODS, pod("web"))
    recorder = EventRecorder(client, component="default-scheduler", host="host-1")
    recorder.event(p, "Normal", "Scheduled", "Successfully assigned default/web to node-1")
    await recorder.flush()
    [event] = await events_about(client, "web")
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"] == {
        "kind": "Pod", "apiVersion": "v1", "name": "web", "namespace": "default",
        "uid": p["metadata"]["uid"], "resourceVersion": p["metadata"]["resourceVersion"],
    }
    assert (event["type"], event["reason"], event["count"]) == ("Normal", "Scheduled", 1)
    assert event["message"] == "Successfully assigned default/web to node-1"
    assert event["source"] == {"component": "default-scheduler", "host": "host-1"}
    assert event["reportingComponent"] == "default-scheduler"
    assert event["firstTimestamp"] and event["lastTimestamp"]
    await recorder.close()


@pytest.mark.parametrize(
    ("advance", "expected_counts"),
    [
        pytest.param(1.0, [3], id="repeats-bump-count"),
        pytest.param(700.0, [1, 1, 1], id="outside-window-new-events"),
    ],
)
async def test_repeated_events(client: ApiClient, advance: float, expected_counts: list[int]) -> None:
    p = await client.create(PODS, pod("flaky"))
    clock = FakeClock()
    recorder = EventRecorder(client, component="kubelet", clock=clock)
    for _ in range(3):
        recorder.event(p, "Warning", "BackOff", "Back-off restarting failed container")
        await recorder.flush()
        clock.now += advance
    counts = sorted(e["count"] for e in await events_about(client, "flaky"))
    assert counts == expected_counts
    await recorder.close()


async def test_different_reasons_are_separate_events(client: ApiClient) -> None:
    p = await client.create(PODS, pod("two"))
    recorder = EventRecorder(client, component="kubelet")
    recorder.event(p, "Normal", "Pulled", "image present")
    recorder.event(p, "Normal", "Started", "started container c")
    recorder.event(p, "Normal", "Pulled", "image present")
    await recorder.flush()
    events = {e["reason"]: e["count"] for e in await events_about(client, "two")}
    assert events == {"Pulled": 2, "Started": 1}
    await recorder.close()


async def test_cluster_scoped_object_events_go_to_default(client: ApiClient) -> None:
    node = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    recorder = EventRecorder(client, component="node-controller")
    recorder.event(node, "Normal", "RegisteredNode", "Node node-1 event: Registered")
    await recorder.flush()
    [event] = await events_about(client, "node-1")
    assert "namespace" not in event["involvedObject"]
    await recorder.close()


async def test_failed_writes_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async with ApiClient("http://127.0.0.1:1", timeout=1) as unreachable:
        recorder = EventRecorder(unreachable, component="x", max_tries=3, retry_delay=0.01)
        recorder.event(pod("p"), "Normal", "R", "m")
        await recorder.flush()
        await recorder.close()
    assert "could not record R" in caplog.text
    assert "(try 3/3)" in caplog.text, "an unreachable apiserver is retried, then the event dropped"
