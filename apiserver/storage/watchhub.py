"""In-process watch fan-out shared by the memory and sqlite backends.

A backend that commits writes itself (memory, sqlite) publishes every committed write here, in
revision order, from the event loop thread. :func:`replay_then_follow` implements the watch
contract of :class:`~apiserver.storage.interface.Storage` on top of it, kine-style:
subscribe first, then replay history from the backend's log, then follow the live queue and
drop what the replay already delivered (de-duplication by revision). Because a subscriber is
registered before the replay reads the log, a write that races with the subscription is seen
either in the replay, in the queue, or in both (and then delivered once): never lost.

Queues are unbounded: the consumer is the apiserver's watch cache, which drains promptly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from apiserver.storage.interface import StorageEvent

ReplayFn = Callable[[int], Awaitable[list[StorageEvent]]]
"""``replay(after)`` returns the next events under the watched prefix with revision > ``after``
(a bounded chunk, oldest first; empty when caught up) or raises CompactedError."""


@dataclass(eq=False)
class Subscription:
    """One live watcher: a prefix and the queue of matching events (None means closed)."""

    prefix: str
    queue: asyncio.Queue[StorageEvent | None] = field(default_factory=asyncio.Queue)


class WatchHub:
    """Registry of subscriptions; ``publish`` and ``close`` must run on the event loop."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._closed = False

    def subscribe(self, prefix: str) -> Subscription:
        sub = Subscription(prefix)
        if self._closed:
            sub.queue.put_nowait(None)
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, events: Iterable[StorageEvent]) -> None:
        """Deliver committed events (in revision order) to every matching subscriber."""
        if not self._subs:
            return
        for event in events:
            for sub in self._subs:
                if event.key.startswith(sub.prefix):
                    sub.queue.put_nowait(event)

    def reopen(self) -> None:
        self._closed = False

    def close(self) -> None:
        """End every watch: each subscriber's iterator returns after what it already has."""
        self._closed = True
        for sub in self._subs:
            sub.queue.put_nowait(None)
        self._subs.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)


async def replay_then_follow(
    hub: WatchHub, prefix: str, after_revision: int, replay: ReplayFn
) -> AsyncIterator[StorageEvent]:
    """Replay events after ``after_revision`` from the log, then follow live writes."""
    sub = hub.subscribe(prefix)
    try:
        last = after_revision
        while True:
            chunk = await replay(last)
            if not chunk:
                break
            for event in chunk:
                if event.revision > last:
                    last = event.revision
                    yield event
        while True:
            live = await sub.queue.get()
            if live is None:
                return
            if live.revision <= last:
                continue
            last = live.revision
            yield live
    finally:
        hub.unsubscribe(sub)
