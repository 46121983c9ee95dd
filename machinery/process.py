"""Running a component's ``serve()`` as a process: uvloop, and SIGTERM/SIGINT cancel it cleanly.

Every ``<component>/server.py`` has ``run(settings)``, which calls :func:`run_until_signalled`.
With ``KUBELAB_PROFILE=DIR`` in the environment the whole run is profiled with cProfile and the
statistics written to ``DIR/<name>-<pid>.prof`` on exit (``python -m pstats`` reads them): a
fallback for machines where py-spy cannot attach to a process. Under ``KUBELAB_NETAUDIT``
(``machinery.netguard``) the stock asyncio loop runs instead of uvloop, whose connects the audit
hook cannot see.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any


def run_until_signalled(serve: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
    """Run ``serve()`` until it returns or the process gets SIGTERM/SIGINT (then cancel it)."""

    async def main() -> None:
        task = asyncio.create_task(serve(), name=name)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    profile_dir = os.environ.get("KUBELAB_PROFILE")
    profiler = cProfile.Profile() if profile_dir else None
    if profiler is not None:
        profiler.enable()
    try:
        import uvloop  # compiled event loop and TLS: faster on every request
    except ImportError:  # pragma: no cover - uvloop is a dependency; this is only a fallback
        asyncio.run(main())
    else:
        if os.environ.get("KUBELAB_NETAUDIT"):
            # libuv connects below Python's audit hooks: the network audit needs asyncio's own loop.
            asyncio.run(main())
        else:
            uvloop.run(main())
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(Path(profile_dir) / f"{name}-{os.getpid()}.prof")
