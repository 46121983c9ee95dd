"""The node agent's NetworkPolicy enforcer: NetworkPolicies + Pods + Namespaces informers → iptables.

Runs beside the :class:`~kubelet.network.proxy.ServiceProxy` in the network-agent role (``await run()``
until ``await stop()``); ``kubelab down`` calls :meth:`NetworkPolicyAgent.cleanup` before the service
proxy's cleanup, which then deletes every chain of the cluster. The rule text comes from
:mod:`kubelet.network.netpol_rules`; this module owns the informers, the debounce and the ``iptables``
processes (through :class:`~kubelet.network.proxy.Iptables`).

Guarantees: each sync loads the whole set of policy chains in one ``iptables-restore --noflush``
transaction of the filter table (all or nothing) and deletes policy chains no longer wanted in the same
transaction; the FORWARD jump is ensured after the chains exist; syncs are debounced and repeated every
``resync_seconds``; a failed sync is logged and retried with backoff. Only chains named
``KUBELAB-<tag>-NP…`` and our own FORWARD jump are ever touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kubelet.network.iptables_rules import ChainNames, chains_in_save, render_restore
from kubelet.network.netpol_rules import PolicyInput, build_policy_rules, is_policy_chain, netpol_jump
from kubelet.network.proxy import Iptables, IptablesError
from machinery.client.informer import SharedInformer
from machinery.client.rest import ApiClient
from machinery.resources import NAMESPACES, NETWORKPOLICIES, PODS

__all__ = ["NetworkPolicyAgent"]

log = logging.getLogger(__name__)


class NetworkPolicyAgent:
    """Keeps the host's filter table in step with the cluster's NetworkPolicies."""

    def __init__(self, client: ApiClient | None, *, cluster: str, node_ips: tuple[str, ...] = (),
                 iptables: str = "iptables", netns: str | None = None, min_sync_interval: float = 0.1,
                 resync_seconds: float = 30.0) -> None:
        """``client`` may be None for :meth:`apply` / :meth:`cleanup` only. ``node_ips``: the nodes'
        addresses (or CIDRs) on the pod network (their traffic to pods is always allowed)."""
        self.client = client
        self.names = ChainNames(cluster)
        self.node_ips = node_ips
        self.iptables = Iptables(iptables, netns=netns)
        self.min_sync_interval = min_sync_interval
        self.resync_seconds = resync_seconds
        self.syncs = 0
        self._changed = asyncio.Event()
        self._stopping = False
        self._informers: list[SharedInformer] = []
        self._synced = asyncio.Event()

    async def run(self) -> None:
        """Start the informers and sync rules until :meth:`stop` (or cancellation)."""
        if self.client is None:
            raise ValueError("NetworkPolicyAgent.run needs an ApiClient")
        self._informers = [SharedInformer(self.client, r) for r in (NETWORKPOLICIES, PODS, NAMESPACES)]
        for informer in self._informers:
            informer.add_handler(on_add=self._on_event, on_update=lambda _o, _n: self._changed.set(),
                                 on_delete=self._on_event)
            await informer.start()
        try:
            for informer in self._informers:
                await informer.wait_synced()
            self._changed.set()
            await self._loop()
        finally:
            for informer in self._informers:
                await informer.stop()

    async def stop(self) -> None:
        """Stop syncing (rules stay; :meth:`cleanup` removes them)."""
        self._stopping = True
        self._changed.set()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait for the first successful sync."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _on_event(self, _obj: dict[str, Any]) -> None:
        self._changed.set()

    async def _loop(self) -> None:
        backoff = self.min_sync_interval
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.resync_seconds)
            if self._stopping:
                return
            await asyncio.sleep(self.min_sync_interval)  # debounce: let a burst of events land
            self._changed.clear()
            try:
                policies, pods, namespaces = (i.store.list() for i in self._informers)
                await self.apply(PolicyInput(policies, pods, namespaces, self.node_ips))
            except (TimeoutError, IptablesError, OSError) as exc:
                log.error("network policies %s: sync failed (retry in %.1fs): %s", self.names.cluster, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._changed.set()
            else:
                backoff = self.min_sync_interval

    async def apply(self, state: PolicyInput) -> str:
        """Make the policy chains match ``state``; returns the restore document loaded."""
        rules = build_policy_rules(state, names=self.names)
        existing = {c for c in chains_in_save(await self.iptables.save("filter"), self.names.prefix)
                    if is_policy_chain(c, self.names)}
        text = render_restore(rules, existing={"filter": existing}, tables=("filter",))
        await self.iptables.restore(text)
        table, chain, spec = netpol_jump(self.names)
        if (await self.iptables.run("-t", table, "-C", chain, *spec) != 0
                and await self.iptables.run("-t", table, "-I", chain, "1", *spec) != 0):
            raise IptablesError(f"cannot insert jump {' '.join(spec)} into {table}/{chain}")
        self.syncs += 1
        self._synced.set()
        return text

    def cleanup(self) -> None:
        """Remove the FORWARD jump and every policy chain (blocking; ``kubelab down``). Idempotent."""
        table, chain, spec = netpol_jump(self.names)
        try:
            for _ in range(100):  # the jump may have been inserted more than once
                if self.iptables.run_sync("-t", table, "-C", chain, *spec) != 0:
                    break
                self.iptables.run_sync("-t", table, "-D", chain, *spec)
            existing = {c for c in chains_in_save(self.iptables.save_sync("filter"), self.names.prefix)
                        if is_policy_chain(c, self.names)}
            if existing:
                lines = ["*filter", *(f":{c} - [0:0]" for c in sorted(existing)),
                         *(f"-X {c}" for c in sorted(existing)), "COMMIT"]
                self.iptables.restore_sync("\n".join(lines) + "\n")
        except FileNotFoundError as exc:
            log.warning("network policies %s: nothing to clean up, iptables is missing: %s", self.names.cluster, exc)
