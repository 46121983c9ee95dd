"""The kubelet's service proxy: Services + Endpoints informers → iptables rules (kube-proxy's iptables mode).

A kubelet started with ``--network-agent`` runs one :class:`ServiceProxy`: ``await run()``
until ``await stop()``; ``kubelab down`` calls :meth:`ServiceProxy.cleanup` to remove every rule of the
cluster. The rule text comes from :mod:`kubelet.network.iptables_rules`; this module owns the informers,
the debounce and the ``iptables`` processes.

Guarantees:

* each sync rebuilds the cluster's whole chain set and loads it in one ``iptables-restore --noflush``
  transaction (all or nothing); syncs are debounced (``min_sync_interval``, ~100 ms) and repeated every
  ``resync_seconds`` to repair drift; a failed sync is logged and retried with backoff;
* only chains named ``KUBELAB-<cluster tag>-…`` and our own jump rules in built-in chains are ever
  created, flushed or deleted; no other chain or table is flushed;
* ``netns`` runs every command through ``ip netns exec`` (tests use a namespace they created).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Sequence
from typing import Any

from kubelet.network.iptables_rules import (
    ChainNames,
    ServicePort,
    build_rules,
    builtin_jumps,
    chains_in_save,
    render_cleanup,
    render_restore,
    service_ports,
)
from kubelet.network.netpol_rules import is_policy_chain
from machinery.client.informer import SharedInformer
from machinery.client.rest import ApiClient
from machinery.meta import object_key
from machinery.resources import ENDPOINTS, SERVICES

__all__ = ["IptablesError", "ServiceProxy"]

log = logging.getLogger(__name__)

_COMMAND_TIMEOUT = 30.0
_LOCK_WAIT = "5"


class IptablesError(RuntimeError):
    """An iptables command failed (its stderr is the message)."""


class Iptables:
    """Runs ``iptables``, ``iptables-save`` and ``iptables-restore`` (optionally inside a network namespace)."""

    def __init__(self, binary: str = "iptables", *, netns: str | None = None) -> None:
        """``binary``: the iptables command (``-save``/``-restore`` are appended for the others)."""
        self.binary = binary
        self.prefix: list[str] = ["ip", "netns", "exec", netns] if netns else []

    def _argv(self, suffix: str, args: Sequence[str]) -> list[str]:
        return [*self.prefix, self.binary + suffix, *args]

    async def _exec(self, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None),
                                              _COMMAND_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, out.decode(), err.decode()

    def _exec_sync(self, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT,
                              check=False)
        return done.returncode, done.stdout, done.stderr

    async def run(self, *args: str) -> int:
        """``iptables -w 5 args``; returns the exit status (1 from ``-C`` means "no such rule")."""
        rc, _, _ = await self._exec(self._argv("", ["-w", _LOCK_WAIT, *args]))
        return rc

    async def save(self, table: str) -> str:
        """``iptables-save -t table``."""
        rc, out, err = await self._exec(self._argv("-save", ["-t", table]))
        if rc:
            raise IptablesError(f"iptables-save -t {table}: {err.strip()}")
        return out

    async def restore(self, text: str) -> None:
        """``iptables-restore --noflush`` of ``text`` (one atomic transaction per table)."""
        rc, _, err = await self._exec(self._argv("-restore", ["-w", _LOCK_WAIT, "--noflush"]), stdin=text)
        if rc:
            raise IptablesError(f"iptables-restore: {err.strip()}")

    def run_sync(self, *args: str) -> int:
        """Blocking :meth:`run` (for :meth:`ServiceProxy.cleanup`)."""
        return self._exec_sync(self._argv("", ["-w", _LOCK_WAIT, *args]))[0]

    def save_sync(self, table: str) -> str:
        """Blocking :meth:`save`."""
        rc, out, err = self._exec_sync(self._argv("-save", ["-t", table]))
        if rc:
            raise IptablesError(f"iptables-save -t {table}: {err.strip()}")
        return out

    def restore_sync(self, text: str) -> None:
        """Blocking :meth:`restore`."""
        rc, _, err = self._exec_sync(self._argv("-restore", ["-w", _LOCK_WAIT, "--noflush"]), stdin=text)
        if rc:
            raise IptablesError(f"iptables-restore: {err.strip()}")


class ServiceProxy:
    """Keeps the node's iptables in step with the cluster's Services and Endpoints."""

    def __init__(self, client: ApiClient | None, *, cluster: str, node_ip: str, iptables: str = "iptables",
                 netns: str | None = None, cluster_cidr: str | None = None, min_sync_interval: float = 0.1,
                 resync_seconds: float = 30.0) -> None:
        """``client`` may be None for :meth:`cleanup` / :meth:`apply` only.

        ``node_ip``: the node's address (NodePorts answer on every local address, this one included).
        ``cluster_cidr``: pod network; when set only traffic from outside it is masqueraded, otherwise all
        service traffic is (which also makes pod → service → pod work without br_netfilter).
        """
        self.client = client
        self.names = ChainNames(cluster)
        self.node_ip = node_ip
        self.cluster_cidr = cluster_cidr
        self.iptables = Iptables(iptables, netns=netns)
        self.min_sync_interval = min_sync_interval
        self.resync_seconds = resync_seconds
        self.syncs = 0
        self._changed = asyncio.Event()
        self._stopping = False
        self._services: SharedInformer | None = None
        self._endpoints: SharedInformer | None = None
        self._synced = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start the informers and sync rules until :meth:`stop` (or cancellation)."""
        if self.client is None:
            raise ValueError("ServiceProxy.run needs an ApiClient")
        self._services = SharedInformer(self.client, SERVICES)
        self._endpoints = SharedInformer(self.client, ENDPOINTS)
        for informer in (self._services, self._endpoints):
            informer.add_handler(on_add=self._on_event, on_update=lambda _old, new: self._on_event(new),
                                 on_delete=self._on_event)
            await informer.start()
        try:
            await self._services.wait_synced()
            await self._endpoints.wait_synced()
            self._changed.set()
            await self._loop()
        finally:
            await self._services.stop()
            await self._endpoints.stop()

    async def stop(self) -> None:
        """Stop syncing (rules stay in place so traffic keeps flowing; :meth:`cleanup` removes them)."""
        self._stopping = True
        self._changed.set()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait for the first successful sync (tests, readiness)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _on_event(self, obj: dict[str, Any]) -> None:
        log.debug("service proxy: change in %s", object_key(obj))
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
                await self.sync()
            except (TimeoutError, IptablesError, OSError) as exc:
                log.error("service proxy %s: sync failed (retry in %.1fs): %s", self.names.cluster, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._changed.set()
            else:
                backoff = self.min_sync_interval

    # -- syncing ---------------------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Program the rules for the informers' current view."""
        assert self._services is not None and self._endpoints is not None
        await self.apply(self._services.store.list(), self._endpoints.store.list())

    async def apply(self, services: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> str:
        """Make iptables match exactly these Services/Endpoints; returns the restore document loaded."""
        by_key = {object_key(ep): ep for ep in endpoints}
        ports: list[ServicePort] = []
        for svc in services:
            ports.extend(service_ports(svc, by_key.get(object_key(svc))))
        rules = build_rules(ports, names=self.names, cluster_cidr=self.cluster_cidr)
        # Network policy chains share the prefix; they belong to kubelet.network.netpol.
        existing = {table: {c for c in chains_in_save(await self.iptables.save(table), self.names.prefix)
                            if not is_policy_chain(c, self.names)}
                    for table in ("filter", "nat")}
        text = render_restore(rules, existing=existing)
        await self.iptables.restore(text)
        await self._ensure_jumps()
        self.syncs += 1
        self._synced.set()
        log.debug("service proxy %s: synced %d service ports", self.names.cluster, len(ports))
        return text

    async def _ensure_jumps(self) -> None:
        for table, chain, spec in builtin_jumps(self.names):
            if (await self.iptables.run("-t", table, "-C", chain, *spec) != 0
                    and await self.iptables.run("-t", table, "-I", chain, "1", *spec) != 0):
                raise IptablesError(f"cannot insert jump {' '.join(spec)} into {table}/{chain}")

    def cleanup(self) -> None:
        """Remove every jump and chain of this cluster (blocking; ``kubelab down``). Idempotent.

        A host without the iptables commands has nothing to clean (logged, not raised); any other failure
        raises :class:`IptablesError`.
        """
        try:
            self._cleanup()
        except FileNotFoundError as exc:
            log.warning("service proxy %s: nothing to clean up, iptables is missing: %s", self.names.cluster, exc)

    def _cleanup(self) -> None:
        for table, chain, spec in builtin_jumps(self.names):
            for _ in range(100):  # a rule may have been inserted more than once
                if self.iptables.run_sync("-t", table, "-C", chain, *spec) != 0:
                    break
                self.iptables.run_sync("-t", table, "-D", chain, *spec)
        existing = {table: chains_in_save(self.iptables.save_sync(table), self.names.prefix)
                    for table in ("filter", "nat")}
        text = render_cleanup(existing)
        if text:
            self.iptables.restore_sync(text)
        log.info("service proxy %s: removed %d chains", self.names.cluster,
                 sum(len(c) for c in existing.values()))
