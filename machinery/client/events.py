"""Recording core/v1 Events about objects, as client-go's ``tools/record`` does.

Controllers, the scheduler and the kubelet call :meth:`EventRecorder.event` from sync code; it
never blocks and never raises: writes go through one background task (named, guarded), in order.
The same (object, type, reason, message) seen again within 10 minutes bumps ``count`` and
``lastTimestamp`` of the Event already written instead of creating another (client-go's event
correlator, without its spam filter). :meth:`EventRecorder.flush` waits for pending writes.

An apiserver that is away (restarting, unreachable) does not lose events and does not stop the
recorder: a write that fails for want of the server (:class:`ServiceUnavailableError`, or any
error that is not an answer of the server) is retried every ``retry_delay`` seconds, up to
``max_tries`` attempts (client-go's ``recordToSink``: 12 tries, 10 s apart), in order; an answer
that rejects the Event is logged and the Event dropped. The writer task is restarted by the next
:meth:`EventRecorder.event` should it ever end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machinery.client.rest import ApiClient
from machinery.errors import ApiError, NotFoundError, ServiceUnavailableError
from machinery.meta import now_rfc3339
from machinery.resources import EVENTS

__all__ = ["EventRecorder"]

log = logging.getLogger(__name__)

_CORRELATION_WINDOW = 600.0  # seconds: repeats within it are counted, not recreated
_MAX_PENDING = 1000
_MAX_REMEMBERED = 4096
_MAX_TRIES = 12
_RETRY_DELAY = 10.0

_Key = tuple[str, str, str, str, str, str, str]


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    last: float


def involved_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The ObjectReference an Event points at."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
           "namespace": meta.get("namespace", ""), "uid": meta.get("uid", ""),
           "resourceVersion": meta.get("resourceVersion", "")}
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Fire-and-forget Event writer for one component (``source.component``) on one host."""

    def __init__(self, client: ApiClient, *, component: str, host: str = "",
                 clock: Callable[[], float] = time.monotonic, max_tries: int = _MAX_TRIES,
                 retry_delay: float = _RETRY_DELAY, max_pending: int = _MAX_PENDING) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.max_tries = max(1, max_tries)
        self.max_pending = max(1, max_pending)
        self.retry_delay = retry_delay
        self._clock = clock
        self._pending: asyncio.Queue[tuple[dict[str, Any], str, str, str]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._seen: dict[_Key, _Seen] = {}
        self._dropped = 0

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (``type_``: Normal | Warning); returns at once."""
        if self._pending is None:
            self._pending = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(self._pending), name=f"events:{self.component}")
            self._worker.add_done_callback(self._guard)
        if self._pending.qsize() >= self.max_pending:
            # One line per outage, not one per event: the count is reported once writes resume.
            if not self._dropped:
                log.warning("events %s: %d events pending, dropping new ones until the apiserver takes them",
                            self.component, self.max_pending)
            self._dropped += 1
            return
        self._pending.put_nowait((obj, type_, reason, message))

    def _guard(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("events %s: writer died", self.component, exc_info=task.exception())

    async def flush(self) -> None:
        """Wait until every recorded event is written (or failed and logged)."""
        if self._pending is not None and self._worker is not None and not self._worker.done():
            await self._pending.join()

    async def close(self) -> None:
        """Flush, then stop the writer task (while the apiserver is away, flushing waits for the
        retries: callers that must not wait bound this with a timeout)."""
        await self.flush()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _run(self, pending: asyncio.Queue[tuple[dict[str, Any], str, str, str]]) -> None:
        while True:
            obj, type_, reason, message = await pending.get()
            try:
                await self._record(obj, type_, reason, message)
            finally:
                pending.task_done()

    async def _record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Write one Event, retrying while the apiserver cannot be reached; never raises."""
        for attempt in range(1, self.max_tries + 1):
            try:
                await self._write(obj, type_, reason, message)
                if self._dropped:
                    log.warning("events %s: %d events were dropped while too many were pending", self.component,
                                self._dropped)
                    self._dropped = 0
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry = attempt < self.max_tries and _unreachable(exc)
                ref = involved_object(obj)
                log.warning("events %s: could not record %s on %s/%s (try %d/%d)%s: %s", self.component, reason,
                            ref.get("namespace", ""), ref.get("name", ""), attempt, self.max_tries,
                            ", retrying" if retry else "", exc)
                if not retry:
                    return
            await asyncio.sleep(self.retry_delay)

    async def _write(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        ref = involved_object(obj)
        namespace = str(ref.get("namespace") or "default")
        key: _Key = (ref.get("kind", ""), namespace, ref.get("name", ""), ref.get("uid", ""), type_, reason,
                     message)
        now = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None and self._clock() - seen.last < _CORRELATION_WINDOW:
            patch = {"count": seen.count + 1, "lastTimestamp": now}
            try:
                await self.client.patch(EVENTS, seen.name, patch, namespace=seen.namespace)
            except NotFoundError:
                pass  # the Event expired or was deleted: write a new one
            else:
                seen.count += 1
                seen.last = self._clock()
                return
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component, "reportingInstance": self.host,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        await self.client.create(EVENTS, body)
        if len(self._seen) >= _MAX_REMEMBERED:
            oldest = min(self._seen, key=lambda k: self._seen[k].last)
            del self._seen[oldest]
        self._seen[key] = _Seen(name, namespace, 1, self._clock())


def _unreachable(exc: Exception) -> bool:
    """Whether a failed write may succeed later: the server did not answer (or answered 503)."""
    return isinstance(exc, ServiceUnavailableError) or not isinstance(exc, ApiError)
