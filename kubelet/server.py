"""The ``kubelab kubelet`` process: one node, or ``--hollow --count N`` simulated nodes.

``serve(settings)`` runs until cancelled (tests embed it); ``run(settings)`` is the blocking
entry point the CLI calls, stopping cleanly on SIGTERM/SIGINT. The work is done by
:class:`kubelet.hollow.KubeletGroup`; this module only owns the process: the API client, the
event recorders, start-up and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from kubelet.hollow import KubeletGroup
from kubelet.settings import KubeletSettings
from kubelet.sync import EventSink
from machinery.client.events import EventRecorder
from machinery.client.rest import ApiClient

__all__ = ["run", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: KubeletSettings, *, started: asyncio.Event | None = None) -> None:
    """Run the nodes of ``settings`` until cancelled."""
    if not settings.hollow:
        # Only the fake runtime exists so far; the Docker runtime plugs in through runtime_factory.
        log.warning("no container runtime other than the fake one yet: running %s as a hollow node",
                    settings.node_name)
    client = ApiClient.from_kubeconfig(settings.kubeconfig, user_agent="kubelab-kubelet", qps=settings.qps,
                                       burst=int(settings.qps * 2))
    recorders: list[EventRecorder] = []

    def events_for(node: str) -> EventSink | None:
        if not settings.emit_events:
            return None
        recorder = EventRecorder(client, component="kubelet", host=node)
        recorders.append(recorder)
        return recorder

    group = KubeletGroup(client, settings, events_factory=events_for)
    try:
        await group.start()
        log.info("kubelet running %d node(s): %s", len(group.nodes), ", ".join(list(group.nodes)[:5]))
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await group.stop()
        for recorder in recorders:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recorder.close(), 2.0)
        await client.close()


def run(settings: KubeletSettings) -> None:
    """Serve in a fresh event loop until SIGTERM or SIGINT."""

    async def main() -> None:
        task = asyncio.create_task(serve(settings), name="kubelet")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
