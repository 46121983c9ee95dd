"""Shared pieces of the crash tests (watch continuity, outage, chaos) and of ``bench/chaos.py``.

* waits on conditions (:func:`wait_for`, :func:`wait_until`), never fixed sleeps;
* :func:`kill_hard`: SIGKILL one pid and wait until it is gone;
* :class:`Cluster`: ``kubelab up --hollow-nodes N`` in a state dir on a fixed port, its
  processes, and how long a killed component takes to come back ready;
* :func:`rollout_problems` / :func:`wait_converged`: the exact converged state of a Deployment
  after crashes (Complete, one scaled ReplicaSet, exactly the replicas on the newest template,
  no orphan, no duplicate);
* :class:`Chaos`: rounds of rolling updates while a random component dies of SIGKILL, and the
  restart delay of each victim (:class:`Kill`);
* :func:`outage_round`: the apiserver held down in the middle of a rollout, then brought back
  with ``kubelab up``, and the time the cluster takes to converge (:class:`Outage`).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from kubelab import launcher
from kubelab.etcd import etcd_healthy
from kubelab.supervision import SUPERVISOR
from machinery.client import ApiClient
from machinery.errors import ApiError
from machinery.resources import DEPLOYMENTS, NODES, PODS, REPLICASETS
from tests.quiet import machine_to_myself

__all__ = [
    "APISERVER",
    "SUPERVISOR",
    "Chaos",
    "Cluster",
    "Kill",
    "Outage",
    "deployment",
    "free_port",
    "kill_hard",
    "outage_round",
    "retry",
    "rollout_problems",
    "seed_from_env",
    "set_image",
    "wait_converged",
    "wait_for",
    "wait_mid_rollout",
    "wait_until",
]

T = TypeVar("T")

APISERVER = "apiserver"
ETCD = "etcd"


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll ``predicate`` until it holds; return the seconds it took. AssertionError after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


async def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> float:
    """:func:`wait_for` on the event loop."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


def kill_hard(pid: int, *, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` (no shutdown code runs) and wait until it is gone (reaped if it is our child)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_for(lambda: not launcher.is_alive(pid), timeout=timeout, what=f"pid {pid} to die of SIGKILL",
             interval=0.02)


# -- a whole cluster on hollow nodes, as `kubelab up` starts it --------------------------------


@dataclass
class Cluster:
    """``kubelab up --hollow-nodes N`` in ``state_dir`` on a fixed loopback port (so a restarted
    apiserver comes back where every component's kubeconfig points)."""

    state_dir: Path
    store: str = "sqlite"
    hollow_nodes: int = 4
    port: int = 0

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def kubelab(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*launcher.kubelab_command(), *args, "--state-dir", str(self.state_dir)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                                env=launcher.python_env())
        if check and result.returncode != 0:
            raise AssertionError(f"kubelab {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def up(self, *, timeout: float = 120) -> None:
        """``kubelab up`` (again): starts whatever is not running."""
        if not self.port:
            self.port = free_port()
        self.kubelab("up", "--port", str(self.port), "--hollow-nodes", str(self.hollow_nodes),
                     "--store", self.store, "--timeout", f"{timeout:g}", timeout=timeout + 60)

    def down(self) -> None:
        self.kubelab("down", check=False)

    def processes(self) -> dict[str, launcher.ManagedProcess]:
        """The cluster's processes by name (pid files in the state dir)."""
        return {process.name: process for process in launcher.list_processes(self.state_dir)}

    def components(self) -> list[str]:
        """What the chaos may kill: every process of the cluster but the supervisor."""
        return sorted(name for name in self.processes() if name != SUPERVISOR)

    def api(self, *, timeout: float = 10) -> ApiClient:
        return ApiClient.from_kubeconfig(self.kubeconfig, timeout=timeout)

    def ready(self, name: str, process: launcher.ManagedProcess) -> bool:
        """Has ``name`` (re)started and become ready: the apiserver answers ``/readyz`` 200, the
        local etcd ``/health``; the other components as soon as their process runs."""
        if not process.alive:
            return False
        if name == APISERVER:
            context = launcher.apiserver_ssl_context(self.state_dir)
            url = launcher.apiserver_url(self.state_dir)
            return context is not None and url is not None and launcher.probe_readyz(url, context)[0] == 200
        if name == ETCD:
            try:
                client_url = str(orjson.loads((self.state_dir / "etcd.json").read_bytes())["client_url"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                return False
            return etcd_healthy(client_url)
        return True

    def wait_restarted(self, name: str, old_pid: int, *, timeout: float) -> float:
        """Seconds until ``name`` runs again under a pid other than ``old_pid`` and is ready."""

        def back() -> bool:
            process = launcher.read_process(self.state_dir, name)
            return process is not None and process.pid != old_pid and self.ready(name, process)

        return wait_for(back, timeout=timeout, what=f"{name} (was pid {old_pid}) to be restarted and ready",
                        interval=0.05)

    def hold(self, name: str) -> None:
        """Stop ``name`` on purpose and keep it down: its pid file goes first, which tells the
        supervisor the exit is deliberate (``kubelab up`` starts it again)."""
        launcher.stop_process(self.state_dir, name, grace=0)

    def is_ready(self, name: str) -> bool:
        process = launcher.read_process(self.state_dir, name)
        return process is not None and self.ready(name, process)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(launcher.log_tail(self.state_dir, name, lines=lines))


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Deployments, rollouts and the exact converged state ----------------------------------------


def deployment(name: str, replicas: int, image: str, *, min_ready_seconds: int = 0) -> dict[str, Any]:
    """A Deployment with Kubernetes' default rolling update (25 % surge, 25 % unavailable)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                {"name": "web", "image": image, "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}}}]}},
        },
    }


async def retry(call: Callable[[], Awaitable[T]], *, timeout: float, what: str) -> T:
    """``call()`` until it answers, through apiserver restarts (connection errors, 5xx, 409)."""
    started = time.monotonic()
    while True:
        try:
            return await call()
        except ApiError as exc:
            if exc.code < 500 and exc.code != 409:
                raise
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: still failing after {timeout:g} s: {exc}") from exc
            await asyncio.sleep(0.2)


async def set_image(api: ApiClient, namespace: str, name: str, image: str, *, timeout: float = 120) -> None:
    """Start a rolling update (``kubectl set image``), retried until the apiserver takes it."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    await retry(lambda: api.patch(DEPLOYMENTS, name, patch, namespace=namespace, patch_type="strategic"),
                timeout=timeout, what=f"set image {image} on {namespace}/{name}")


def _controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), {})


def _pod_ready(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and _condition(pod, "Ready").get("status") == "True"


async def rollout_problems(api: ApiClient, namespace: str, name: str) -> list[str]:
    """Everything that keeps the Deployment from the exact converged state; [] once it is there.

    Converged: the Deployment is Complete (``kubectl rollout status``'s rule: observedGeneration
    current, every replica updated and available, Progressing with NewReplicaSetAvailable);
    exactly one ReplicaSet has replicas > 0, the one of the current template; exactly
    ``replicas`` pods, none terminating, every one Running and Ready on an existing node, owned
    by that ReplicaSet and on its template; no pod or ReplicaSet without its live owner.
    """
    deploy = await api.get(DEPLOYMENTS, name, namespace=namespace)
    spec, status = deploy["spec"], deploy.get("status", {})
    want = int(spec["replicas"])
    problems = []
    if status.get("observedGeneration", 0) < deploy["metadata"]["generation"]:
        problems.append(f"observedGeneration {status.get('observedGeneration')} < {deploy['metadata']['generation']}")
    for field_name in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        if status.get(field_name, 0) != want:
            problems.append(f"status.{field_name} {status.get(field_name, 0)} != {want}")
    progressing = _condition(deploy, "Progressing")
    if progressing.get("reason") != "NewReplicaSetAvailable":
        problems.append(f"Progressing reason {progressing.get('reason')}")
    selector = f"app={name}"
    sets = (await api.list(REPLICASETS, namespace=namespace, label_selector=selector))["items"]
    image = spec["template"]["spec"]["containers"][0]["image"]
    scaled = [rs for rs in sets if rs["spec"].get("replicas", 0) > 0]
    newest = [rs for rs in sets if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image]
    if len(newest) != 1:
        problems.append(f"{len(newest)} ReplicaSets on image {image}")
    if [rs["metadata"]["uid"] for rs in scaled] != [rs["metadata"]["uid"] for rs in newest]:
        sizes = [(rs["metadata"]["name"], rs["spec"]["replicas"]) for rs in scaled]
        problems.append(f"ReplicaSets with replicas > 0: {sizes}")
    problems += [f"ReplicaSet {rs['metadata']['name']} is not owned by the Deployment"
                 for rs in sets if _controller_uid(rs) != deploy["metadata"]["uid"]]
    pods = (await api.list(PODS, namespace=namespace, label_selector=selector))["items"]
    nodes = {node["metadata"]["name"] for node in (await api.list(NODES))["items"]}
    new_uid = newest[0]["metadata"]["uid"] if len(newest) == 1 else None
    if len(pods) != want:
        problems.append(f"{len(pods)} pods, want {want}")
    counts: dict[str, int] = {}
    for pod in pods:
        owner = _controller_uid(pod)
        key = ("terminating" if pod["metadata"].get("deletionTimestamp") else
               "orphan" if owner not in {rs["metadata"]["uid"] for rs in sets} else
               "on an old template" if owner != new_uid or pod["spec"]["containers"][0]["image"] != image else
               "unscheduled or on a missing node" if pod["spec"].get("nodeName") not in nodes else
               "not ready" if not _pod_ready(pod) else "")
        if key:
            counts[key] = counts.get(key, 0) + 1
    problems += [f"{count} pods {key}" for key, count in sorted(counts.items())]
    return problems


async def wait_converged(api: ApiClient, namespace: str, name: str, *, timeout: float) -> float:
    """Seconds until :func:`rollout_problems` is empty (apiserver errors count as not yet)."""
    started = time.monotonic()
    last: list[str] = []
    while True:
        try:
            last = await rollout_problems(api, namespace, name)
        except ApiError as exc:
            last = [f"apiserver: {exc}"]
        if not last:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{namespace}/{name} did not converge in {timeout:g} s: {last}")
        await asyncio.sleep(0.5)


# -- the chaos: rolling updates while random components die ------------------------------------


@dataclass
class Kill:
    """One round of chaos: the component killed, and how long the cluster took to heal."""

    round: int
    component: str
    pid: int
    image: str
    killed_at: float
    """``time.monotonic()`` when the SIGKILL was sent."""
    restart_delay: float | None = None
    """Seconds from the SIGKILL to the supervisor's new process being ready."""
    converge: float | None = None
    """Seconds from the SIGKILL to the exact converged state (when the round waited for it)."""

    def row(self) -> str:
        def seconds(value: float | None) -> str:
            return f"{value:8.2f} s" if value is not None else "       - "

        return (f"  round {self.round:2d}  killed {self.component:<20} (pid {self.pid:>7})  "
                f"restart delay {seconds(self.restart_delay)}  re-converged {seconds(self.converge)}")


@dataclass
class Chaos:
    """Rolling updates of one Deployment while a random component of ``cluster`` is SIGKILLed.

    Each :meth:`round` starts a rolling update to a new image, lets it run a random pause (from
    ``pause``), kills one randomly chosen running component and returns the :class:`Kill`; it
    restarts nothing itself. :meth:`restarted` waits for the supervisor to bring the victim back.
    """

    cluster: Cluster
    api: ApiClient
    namespace: str
    name: str
    rng: random.Random
    pause: tuple[float, float] = (1.0, 4.0)
    restart_timeout: float = 120.0
    """The supervisor's backoff is capped at 30 s; more than that is a component that stays dead."""

    async def round(self, number: int) -> Kill:
        image = f"kubelab/nginx:{number}.0"
        await set_image(self.api, self.namespace, self.name, image)
        await asyncio.sleep(self.rng.uniform(*self.pause))  # chaos pacing: the rollout is in flight
        running = {name: p for name, p in self.cluster.processes().items() if name != SUPERVISOR and p.alive}
        assert running, "no component runs: nothing to kill"
        victim = self.rng.choice(sorted(running))
        pid = running[victim].pid
        killed_at = time.monotonic()
        await asyncio.to_thread(kill_hard, pid)
        return Kill(round=number, component=victim, pid=pid, image=image, killed_at=killed_at)

    async def restarted(self, kill: Kill) -> Kill:
        """Wait until ``kill``'s component runs again and is ready; record the delay since the kill."""
        await asyncio.to_thread(self.cluster.wait_restarted, kill.component, kill.pid, timeout=self.restart_timeout)
        kill.restart_delay = time.monotonic() - kill.killed_at
        return kill

    async def converged(self, kill: Kill, *, timeout: float) -> Kill:
        """Wait for the exact converged state; record the time since ``kill``."""
        await wait_converged(self.api, self.namespace, self.name, timeout=timeout)
        kill.converge = time.monotonic() - kill.killed_at
        return kill


def seed_from_env(variable: str = "KUBELAB_CHAOS_SEED") -> int:
    """The seed in ``variable`` (to replay a run), else a fresh one. Print it."""
    text = os.environ.get(variable, "")
    seed = int(text) if text else random.SystemRandom().randrange(1 << 31)
    print(f"chaos seed {seed} (replay with {variable}={seed})")
    return seed


# -- the outage: the apiserver held down in the middle of a rollout ------------------------------


@dataclass
class Outage:
    """One outage round: how far the rollout was, and how the cluster came back."""

    updated_at_stop: int
    """Replicas already on the new template when the apiserver stopped."""
    down: float
    """Seconds the apiserver was down (from its stop until it answered ``/readyz`` again)."""
    converge: float
    """Seconds from the apiserver's return to the exact converged state."""


async def wait_mid_rollout(api: ApiClient, namespace: str, name: str, *, timeout: float = 120) -> int:
    """Wait until the current template's rollout is under way but not done; return updatedReplicas."""
    started = time.monotonic()
    while True:
        deploy = await api.get(DEPLOYMENTS, name, namespace=namespace)
        status, want = deploy.get("status", {}), int(deploy["spec"]["replicas"])
        if status.get("observedGeneration", 0) >= deploy["metadata"]["generation"]:  # counts of this template
            updated = int(status.get("updatedReplicas", 0))
            if 0 < updated < want:
                return updated
            assert updated < want, f"{namespace}/{name} rolled out before it could be interrupted"
        assert time.monotonic() - started < timeout, f"the rollout of {namespace}/{name} did not start"
        await asyncio.sleep(0.05)


async def outage_round(cluster: Cluster, api: ApiClient, namespace: str, name: str, *, image: str, seconds: float,
                       converge_timeout: float) -> Outage:
    """Roll ``name`` to ``image``; in the middle, stop the apiserver on purpose for ``seconds``
    (the supervisor leaves it down); then ``kubelab up`` and time the way back to convergence."""
    await set_image(api, namespace, name, image)
    updated = await wait_mid_rollout(api, namespace, name)
    stopped = time.monotonic()
    await asyncio.to_thread(cluster.hold, APISERVER)
    await asyncio.sleep(seconds)  # the outage itself: what is tested is its length
    with ExitStack() as alone:
        # The way back is timed: without tests of another lane competing for the cores (a no-op when
        # no other lane runs). Waiting for them only makes the outage longer.
        await asyncio.to_thread(alone.enter_context, machine_to_myself())
        up = asyncio.create_task(asyncio.to_thread(cluster.up), name="kubelab-up")
        try:
            await wait_until(lambda: cluster.is_ready(APISERVER), timeout=120, what="the apiserver to be back",
                             interval=0.05)
            back = time.monotonic()
            converge = await wait_converged(api, namespace, name, timeout=converge_timeout)
        finally:
            await up
    return Outage(updated_at_stop=updated, down=back - stopped, converge=converge)
