"""Image pull back-off on the fake runtime, with a hand-driven clock.

A failed pull shows ``ErrImagePull`` at once, then ``ImagePullBackOff`` (``Back-off pulling
image "x"``) until the back-off (10 s doubling to 300 s per pod and image) has passed; only then
is the image tried again. The events are Kubernetes' (``Failed to pull image``, ``Error:
ErrImagePull``, ``Back-off pulling image``, ``Error: ImagePullBackOff``); ``imagePullPolicy:
Never`` with an absent image is ``ErrImageNeverPull`` without back-off.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubelet.backoff import CrashLoopBackoff
from kubelet.imagepull import ImagePullBackoff, failed_event_message
from kubelet.runtime.docker_spec import pull_policy
from kubelet.runtime.fake import FakeRuntime
from kubelet.runtime.interface import ContainerState
from kubelet.sync import PodSyncer

IMAGE = "kubelab/absent:1.0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StatusClient:
    """Just enough of ``ApiClient`` for status writes: they land in the pod dict."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.writes = 0

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.writes += 1
        self.pod["status"] = body["status"]
        return self.pod


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def take(self) -> list[tuple[str, str, str]]:
        taken, self.events = self.events, []
        return taken


def make_pod(policy: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": IMAGE}
    if policy:
        container["imagePullPolicy"] = policy
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "uid-1", "resourceVersion": "1"},
            "spec": {"nodeName": "node-a", "containers": [container]}}


class Harness:
    def __init__(self, pod: dict[str, Any]) -> None:
        self.clock = Clock()
        self.runtime = FakeRuntime()
        self.runtime.missing_images.add(IMAGE)
        self.pod = pod
        self.client = StatusClient(pod)
        self.events = Recorder()
        self.requeued: list[float] = []
        self.syncer = PodSyncer(self.client, self.runtime, self.runtime,  # type: ignore[arg-type]
                                node_name="node-a", host_ip="127.0.0.1", backoff=CrashLoopBackoff(),
                                requeue=lambda _key, delay: self.requeued.append(delay), events=self.events,
                                image_backoff=ImagePullBackoff(clock=self.clock))

    async def sync(self) -> dict[str, Any]:
        self.requeued.clear()
        await self.syncer.sync("default/p", self.pod)
        waiting: dict[str, Any] = self.pod["status"]["containerStatuses"][0]["state"].get("waiting") or {}
        return waiting


def test_backoff_doubles_to_the_maximum_per_pod_and_image() -> None:
    clock = Clock()
    backoff = ImagePullBackoff(clock=clock)
    assert backoff.remaining("u", IMAGE) == 0
    delays = [backoff.failed("u", IMAGE) for _ in range(7)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.remaining("u", IMAGE) == 300
    assert backoff.remaining("u", "other:1") == 0 and backoff.remaining("v", IMAGE) == 0
    clock.now += 299
    assert backoff.remaining("u", IMAGE) == pytest.approx(1)
    clock.now += 1
    assert backoff.remaining("u", IMAGE) == 0
    backoff.forget_pod("u")
    assert backoff.failed("u", IMAGE) == 10


def test_failed_event_message_names_the_image_once() -> None:
    assert failed_event_message("x:1", 'failed to pull image "x:1": no registry') == \
        'Failed to pull image "x:1": no registry'
    assert failed_event_message("x:1", "boom") == 'Failed to pull image "x:1": boom'


@pytest.mark.parametrize(("container", "policy"), [
    ({"image": "nginx"}, "Always"),
    ({"image": "nginx:latest"}, "Always"),
    ({"image": "registry:5000/nginx"}, "Always"),
    ({"image": "registry:5000/nginx:1.25"}, "IfNotPresent"),
    ({"image": "nginx@sha256:abc"}, "IfNotPresent"),
    ({"image": "nginx:latest", "imagePullPolicy": "Never"}, "Never"),
    ({"image": "nginx:1.25", "imagePullPolicy": "Always"}, "Always"),
])
def test_pull_policy_defaults(container: dict[str, Any], policy: str) -> None:
    assert pull_policy(container) == policy


async def test_err_image_pull_then_backoff_then_retry_then_start() -> None:
    h = Harness(make_pod())
    waiting = await h.sync()
    assert waiting["reason"] == "ErrImagePull"
    assert IMAGE in waiting["message"]
    assert h.pod["status"]["phase"] == "Pending"
    assert h.events.take() == [
        ("Warning", "Failed", f'Failed to pull image "{IMAGE}": not present on this hollow node'),
        ("Warning", "Failed", "Error: ErrImagePull"),
    ]
    assert h.requeued == [pytest.approx(10, abs=0.1)]

    # Shown as ErrImagePull for a while (a re-sync does not flip it at once), no new events.
    h.clock.now += 2
    waiting = await h.sync()
    assert waiting["reason"] == "ErrImagePull" and IMAGE in waiting["message"]
    assert h.events.take() == [] and h.requeued == [pytest.approx(3, abs=0.1)]

    # Between tries: no pull, ImagePullBackOff, a re-sync when the back-off ends.
    h.clock.now += 4
    waiting = await h.sync()
    assert waiting == {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{IMAGE}"'}
    assert h.events.take() == [("Normal", "BackOff", f'Back-off pulling image "{IMAGE}"'),
                               ("Warning", "Failed", "Error: ImagePullBackOff")]
    assert h.requeued == [pytest.approx(4, abs=0.1)]
    assert await h.runtime.list_containers("uid-1") == []

    # The back-off passed: tried again, failed again, twice as long now.
    h.clock.now += 6
    waiting = await h.sync()
    assert waiting["reason"] == "ErrImagePull"
    assert h.requeued == [pytest.approx(20, abs=0.1)]
    h.events.take()
    h.clock.now += 19.5
    assert (await h.sync())["reason"] == "ImagePullBackOff"
    h.events.take()

    # The image appeared: the next try after the back-off starts the container.
    h.runtime.missing_images.clear()
    h.clock.now += 1
    await h.sync()
    [created] = await h.runtime.list_containers("uid-1")
    assert created.image == IMAGE and created.state is not ContainerState.EXITED
    reasons = [reason for _, reason, _ in h.events.take()]
    assert reasons[:3] == ["Pulled", "Created", "Started"]


async def test_never_pull_has_no_backoff() -> None:
    h = Harness(make_pod("Never"))
    for _ in range(2):
        waiting = await h.sync()
        assert waiting["reason"] == "ErrImageNeverPull"
        assert waiting["message"] == f'container image "{IMAGE}" is not present with pull policy of Never'
        assert ("Warning", "Failed", "Error: ErrImageNeverPull") in h.events.take()
    assert await h.runtime.list_containers("uid-1") == []


async def test_deleted_pod_forgets_its_backoff() -> None:
    h = Harness(make_pod())
    assert (await h.sync())["reason"] == "ErrImagePull"
    await h.syncer.sync("default/p", None)
    await asyncio.sleep(0)
    assert h.syncer.image_backoff.remaining("uid-1", IMAGE) == 0
