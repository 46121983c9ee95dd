"""The controller-manager: one informer factory, every controller, leader election.

Called by ``controllers.server`` (the process) and by tests. With ``leader_elect`` only the holder
of the ``kube-controller-manager`` Lease runs controllers (two managers can run; one acts); losing
the lease cancels them. Each controller runs as a named, guarded task: a controller that crashes is
logged and restarted after a pause instead of silently vanishing. Nothing is given up on: every
controller's workqueue retries a failing key until it syncs (``ControllerManagerSettings.workqueue``),
and the shared informers resync every ``resync_seconds`` so each key is synced again periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from controllers.clusterroleaggregation import ClusterRoleAggregationController
from controllers.cronjob import CronJobController
from controllers.daemonset import DaemonSetController
from controllers.deployment import DeploymentController
from controllers.endpoints import EndpointsController
from controllers.endpointslice import EndpointSliceController
from controllers.garbagecollector import GarbageCollectorController
from controllers.hpa import HorizontalPodAutoscalerController
from controllers.job import JobController
from controllers.localpath import LocalPathProvisioner
from controllers.namespace import NamespaceController
from controllers.nodelifecycle import NodeLifecycleController
from controllers.podgc import PodGCController
from controllers.pvbinder import PersistentVolumeBinderController
from controllers.pvcprotection import StorageProtectionController
from controllers.replicaset import ReplicaSetController
from controllers.replicationcontroller import ReplicationControllerController
from controllers.resourcequota import ResourceQuotaController
from controllers.rootcacert import RootCACertPublisher
from controllers.serviceaccount import ServiceAccountController
from controllers.settings import ControllerManagerSettings
from controllers.statefulset import StatefulSetController
from controllers.ttlafterfinished import TTLAfterFinishedController
from machinery.client import ApiClient, InformerFactory
from machinery.client.leaderelection import LeaderElector
from machinery.meta import random_suffix

log = logging.getLogger(__name__)

_RESTART_DELAY = 1.0


class Controller(Protocol):
    async def run(self, workers: int) -> None: ...


ControllerFactory = Callable[[ApiClient, InformerFactory, ControllerManagerSettings], Controller]

CONTROLLERS: dict[str, ControllerFactory] = {
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "garbagecollector": GarbageCollectorController,
    "endpoints": EndpointsController,
    "endpointslice": EndpointSliceController,
    "nodelifecycle": NodeLifecycleController,
    "namespace": NamespaceController,
    "serviceaccount": ServiceAccountController,
    "root-ca-cert-publisher": RootCACertPublisher,
    "podgc": PodGCController,
    "clusterrole-aggregation": ClusterRoleAggregationController,
    "job": JobController,
    "cronjob": CronJobController,
    "statefulset": StatefulSetController,
    "daemonset": DaemonSetController,
    "replicationcontroller": ReplicationControllerController,
    "ttl-after-finished": TTLAfterFinishedController,
    "horizontalpodautoscaling": HorizontalPodAutoscalerController,
    "persistentvolume-binder": PersistentVolumeBinderController,
    "local-path-provisioner": LocalPathProvisioner,
    "storage-protection": StorageProtectionController,
    "resourcequota": ResourceQuotaController,
}
"""Every controller by its ``--controllers`` name."""


def default_identity() -> str:
    """``<hostname>_<random>``, like kube-controller-manager's leader-election identity."""
    return f"{socket.gethostname()}_{random_suffix(8)}"


class ControllerManager:
    """Runs the enabled controllers (while leader, when leader election is on)."""

    def __init__(self, client: ApiClient, settings: ControllerManagerSettings, *,
                 controllers: dict[str, ControllerFactory] | None = None) -> None:
        self.client = client
        self.settings = settings
        self.registry = dict(CONTROLLERS if controllers is None else controllers)
        self.identity = settings.identity or default_identity()
        self.elector: LeaderElector | None = None
        self.running: dict[str, Any] = {}
        self.leading = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.elector is not None else self.leading.is_set()

    async def run(self) -> None:
        """Run until cancelled."""
        if not self.settings.leader_elect:
            await self.lead()
            return
        s = self.settings
        self.elector = LeaderElector(self.client, lease_name=s.lease_name, namespace=s.lease_namespace,
                                     identity=self.identity, lease_duration=s.lease_duration,
                                     renew_deadline=s.renew_deadline, retry_period=s.retry_period)
        await self.elector.run(self.lead)

    async def lead(self) -> None:
        """Start the informers and every enabled controller; run until cancelled."""
        factory = InformerFactory(self.client, resync_seconds=self.settings.resync_seconds)
        tasks: list[asyncio.Task[None]] = []
        self.leading.set()
        try:
            for name, make in self.registry.items():
                if not self.settings.enabled(name):
                    continue
                controller = make(self.client, factory, self.settings)
                self.running[name] = controller
                tasks.append(asyncio.create_task(self._guard(name, controller), name=f"controller:{name}"))
            await factory.start()
            log.info("controller-manager %s: started %s", self.identity, ", ".join(self.running))
            await asyncio.gather(*tasks)
        finally:
            self.leading.clear()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.running.clear()
            await factory.stop()

    async def _guard(self, name: str, controller: Controller) -> None:
        workers = self.settings.workers_for(name)
        while True:
            try:
                await controller.run(workers)
                log.warning("controller %s returned; restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller %s crashed; restarting", name)
            await asyncio.sleep(_RESTART_DELAY)
