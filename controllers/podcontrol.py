"""Pod control: creating and deleting a controller's pods with expectations and events (Kubernetes'
``PodControlInterface`` / ``RealPodControl`` in ``controller_utils.go``).

Used by the ReplicaSet (and ReplicationController), Job, DaemonSet and StatefulSet controllers, each
through one :class:`PodControl` over the controller itself: its ``client``, ``recorder`` and
``expectations`` are read at every call, so whatever the controller holds then is used. What it
guarantees, for the controller key ``key`` (``namespace/name`` of the owner):

- creations: ``expect_creations(key, n)`` is recorded before the first request, and every creation
  that failed or was never attempted is taken back (``lower_creations``), so only pods that exist
  are awaited from the informer. Each created pod records ``Normal SuccessfulCreate "Created pod:
  <name>"`` on the owner;
- deletions: ``expect_deletions`` names every victim before the first request; each request carries
  the pod's UID as a precondition (a pod re-created under the same name is never deleted); a pod
  already gone, or a failed request, counts as observed at once. Each deleted pod records ``Normal
  SuccessfulDelete`` on the owner (``"Deleted pod: <name>"`` unless the caller words it);
- errors: the first failure is raised as the :class:`~machinery.errors.ApiError` it was (anything
  else as ``ServiceUnavailableError``), after every request of the round has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from controllers.expectations import ControllerExpectations
from controllers.replicaset_util import slow_start_batches
from machinery import errors
from machinery.client import ApiClient, EventRecorder
from machinery.meta import object_key
from machinery.resources import PODS

Obj = dict[str, Any]


def deleted_pod(pod: Obj) -> str:
    """The default ``SuccessfulDelete`` message."""
    return f"Deleted pod: {pod['metadata']['name']}"


class PodController(Protocol):
    """What pod control needs of its controller."""

    client: ApiClient
    recorder: EventRecorder
    expectations: ControllerExpectations


class PodControl:
    """Creates and deletes the pods of one controller's objects."""

    def __init__(self, controller: PodController) -> None:
        self.controller = controller

    async def create_pods(self, owner: Obj, key: str, pods: Sequence[Obj], *, slow_start: bool = True,
                          record_failures: bool = False) -> None:
        """Create ``pods`` in the owner's namespace. ``slow_start``: in batches of 1, 2, 4, … that stop
        after the first batch with a failure (Kubernetes' ``slowStartBatch``); otherwise all at once.
        ``record_failures``: each failed creation also records ``Warning FailedCreate "Error creating:
        <error>"``."""
        if not pods:
            return
        ctl = self.controller
        namespace = owner["metadata"]["namespace"]
        ctl.expectations.expect_creations(key, len(pods))
        created = 0
        todo = list(pods)
        for size in slow_start_batches(len(todo)) if slow_start else [len(todo)]:
            batch, todo = todo[:size], todo[size:]
            results = await asyncio.gather(*(ctl.client.create(PODS, pod, namespace=namespace) for pod in batch),
                                           return_exceptions=True)
            failures: list[BaseException] = []
            for r in results:
                if isinstance(r, BaseException):
                    failures.append(r)
                    if record_failures:
                        ctl.recorder.event(owner, "Warning", "FailedCreate", f"Error creating: {r}")
                else:
                    ctl.recorder.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {r['metadata']['name']}")
            created += len(batch) - len(failures)
            if failures:
                # Creations that failed or were never attempted will never be observed.
                ctl.expectations.lower_creations(key, len(pods) - created)
                raise_first(failures)

    async def delete_pods(self, owner: Obj, key: str, victims: Sequence[Obj], *,
                          message: Callable[[Obj], str] = deleted_pod) -> None:
        """Delete ``victims`` at once, each under a UID precondition; ``message(pod)`` words the
        ``SuccessfulDelete`` event."""
        if not victims:
            return
        ctl = self.controller
        ctl.expectations.expect_deletions(key, [object_key(p) for p in victims])

        async def delete(pod: Obj) -> None:
            meta = pod["metadata"]
            try:
                await ctl.client.delete(PODS, meta["name"], namespace=meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
            except errors.NotFoundError:
                ctl.expectations.deletion_observed(key, object_key(pod))
                return
            except errors.ApiError:
                ctl.expectations.deletion_observed(key, object_key(pod))
                raise
            ctl.recorder.event(owner, "Normal", "SuccessfulDelete", message(pod))

        raise_first(await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True))


def raise_first(results: Sequence[Any]) -> None:
    """Raise the first exception among ``results`` (as an ``ApiError``); return when there is none."""
    for r in results:
        if isinstance(r, errors.ApiError):
            raise r
        if isinstance(r, BaseException):
            raise errors.ServiceUnavailableError(str(r)) from r
