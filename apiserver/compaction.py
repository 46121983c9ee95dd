"""Periodic compaction of storage history (Kubernetes' apiserver compacts every 5 minutes).

Keeps the newest ``compaction_keep_revisions`` revisions, so watches can resume within that
window; older resourceVersions answer 410 Expired.
"""

from __future__ import annotations

import asyncio
import logging

from apiserver.settings import ApiServerSettings
from apiserver.storage.interface import Storage

log = logging.getLogger(__name__)


async def compact_once(storage: Storage, keep: int) -> int:
    """Compact below ``current - keep``; returns the compacted revision (0 when nothing to do)."""
    current = await storage.current_revision()
    target = current - keep
    if target <= await storage.compacted_revision():
        return 0
    await storage.compact(target)
    log.info("compacted storage at revision %d", target)
    return target


async def run_compactor(storage: Storage, settings: ApiServerSettings) -> None:
    while True:
        await asyncio.sleep(settings.compaction_interval_seconds)
        try:
            await compact_once(storage, settings.compaction_keep_revisions)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("compaction failed")
