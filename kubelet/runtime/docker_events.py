"""Docker's event stream → :class:`RuntimeEvent` on the kubelet's event loop.

Owned by :class:`kubelet.runtime.docker.DockerRuntime`. One daemon thread reads
``client.events`` filtered to this cluster's and node's containers (``start``, ``die``, ``oom``)
and hands each event to the loop with ``call_soon_threadsafe``, so the kubelet re-syncs a pod
within tens of milliseconds of a container exiting, without polling. A broken stream (dockerd
restarted) is reopened after a short pause until :meth:`DockerEventWatcher.stop` is called.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubelet.runtime.docker_spec import KIND_SANDBOX, LABEL_CLUSTER, LABEL_KIND, LABEL_NODE, LABEL_POD_UID
from kubelet.runtime.interface import RuntimeEvent, RuntimeEventType

__all__ = ["DockerEventWatcher", "to_runtime_event"]

log = logging.getLogger(__name__)

_ACTIONS = {"start": RuntimeEventType.CONTAINER_STARTED, "die": RuntimeEventType.CONTAINER_DIED,
            "oom": RuntimeEventType.CONTAINER_DIED}


def to_runtime_event(event: Mapping[str, Any]) -> RuntimeEvent | None:
    """The runtime event for one decoded Docker event, or ``None`` when it is not one of ours."""
    action = str(event.get("Action") or event.get("status") or "")
    type_ = _ACTIONS.get(action)
    actor = event.get("Actor") or {}
    attributes: Mapping[str, str] = actor.get("Attributes") or {}
    uid = attributes.get(LABEL_POD_UID)
    if type_ is None or not uid:
        return None
    if attributes.get(LABEL_KIND) == KIND_SANDBOX:
        type_ = RuntimeEventType.SANDBOX_CHANGED
    return RuntimeEvent(type=type_, pod_uid=uid, container_id=str(actor.get("ID") or event.get("id") or ""))


class DockerEventWatcher:
    """A background reader of one node's container events (start it once, stop it once)."""

    def __init__(self, client: Any, *, cluster: str, node: str, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[RuntimeEvent], None], on_oom: Callable[[str], None] | None = None,
                 retry_interval: float = 0.5) -> None:
        self._client = client
        self._filters = {"type": "container", "event": list(_ACTIONS),
                         "label": [f"{LABEL_CLUSTER}={cluster}", f"{LABEL_NODE}={node}"]}
        self._loop = loop
        self._deliver = deliver
        self._on_oom = on_oom
        self._retry_interval = retry_interval
        self._stopping = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"docker-events-{cluster}-{node}", daemon=True)
        self.connected = threading.Event()
        """Set once the stream is open (tests wait on it before causing events)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the stream and wait for the thread (it blocks in a socket read until then)."""
        self._stopping.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # the socket may already be gone
                log.debug("closing the docker event stream failed", exc_info=True)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                stream = self._client.events(decode=True, filters=self._filters)
                with self._lock:
                    self._stream = stream
                if self._stopping.is_set():
                    stream.close()
                    return
                self.connected.set()
                for raw in stream:
                    if self._on_oom is not None and raw.get("Action") == "oom":
                        # Recorded on this thread, before the die event that follows it is handed over:
                        # Docker's State.OOMKilled can miss an OOM kill when exit and OOM race.
                        self._on_oom(str((raw.get("Actor") or {}).get("ID") or ""))
                    event = to_runtime_event(raw)
                    if event is not None:
                        self._hand_over(event)
            except Exception:
                if self._stopping.is_set():
                    return
                log.warning("docker event stream broke; reopening", exc_info=True)
            self.connected.clear()
            self._stopping.wait(self._retry_interval)

    def _hand_over(self, event: RuntimeEvent) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, event)
        except RuntimeError:  # the loop is closed: the kubelet is gone
            self._stopping.set()
