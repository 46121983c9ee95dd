"""Objects every cluster starts with: the ``default``, ``kube-system``, ``kube-public`` and
``kube-node-lease`` namespaces (created once; existing ones are left alone)."""

from __future__ import annotations

import logging

from apiserver.context import ApiContext
from apiserver.registry import WriteOptions
from machinery.errors import AlreadyExistsError
from machinery.resources import lookup

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure_system_namespaces(ctx: ApiContext) -> None:
    resource = lookup("", "v1", "namespaces")
    assert resource is not None
    registry = ctx.registry(resource)
    for name in SYSTEM_NAMESPACES:
        if await ctx.storage.get(resource.storage_key(None, name)) is not None:
            continue
        try:
            await registry.create(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                                  WriteOptions())
            log.info("created namespace %s", name)
        except AlreadyExistsError:
            pass
