"""One node's view of the Docker engine, shared by the parts of the Docker runtime.

:class:`DockerRuntimeSettings` say where the node's pods live; :class:`NodeContainers` finds the
node's containers by their labels (:mod:`kubelet.runtime.docker_spec`), pause containers apart from
the others; :func:`require_image` checks that an image is present as ``imagePullPolicy`` asks (no
registry is ever contacted); :func:`translated` turns SDK errors into
:class:`~kubelet.runtime.interface.RuntimeError_` so that none crosses the runtime seam. Used by
:mod:`kubelet.runtime.docker_sandbox` and :mod:`kubelet.runtime.docker`. Everything here is
blocking: callers run it in worker threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from kubelet.runtime.docker_network import network_name
from kubelet.runtime.docker_spec import (
    KIND_SANDBOX,
    LABEL_CLUSTER,
    LABEL_KIND,
    LABEL_NODE,
    LABEL_POD_UID,
    ImageNeverPullError,
    ImagePullError,
)
from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_

__all__ = ["DockerRuntimeSettings", "NodeContainers", "require_image", "translated"]


@dataclass(frozen=True)
class DockerRuntimeSettings:
    """Where one node's pods live on the Docker engine."""

    cluster: str
    """The cluster name: every container and the network carry ``kubelab.dev/cluster=<cluster>``."""
    node_name: str
    """This node: containers carry ``kubelab.dev/node=<node>``; other nodes' containers are ignored."""
    pod_subnet: str = "10.244.0.0/16"
    """Subnet of the pod network (used only when this runtime creates the network)."""
    pod_cidr: str = ""
    """The node's ``spec.podCIDR`` (inside the pod network's subnet): pod IPs come from it. Empty: Docker
    picks them from the whole subnet."""
    pause_image: str = "kubelab/busybox:1.35"
    """Image of the pause container; it needs ``sh`` and ``sleep``."""
    host_port_ip: str = "127.0.0.1"
    """Host address that ``hostPort`` entries are published on."""

    @property
    def network(self) -> str:
        return network_name(self.cluster)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """SDK errors never cross the runtime seam."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise ContainerNotFoundError(f"{what}: {exc.explanation or exc}") from exc
    except docker.errors.APIError as exc:
        raise RuntimeError_(f"{what}: {exc.explanation or exc}") from exc
    except docker.errors.DockerException as exc:
        raise RuntimeError_(f"{what}: {exc}") from exc


class NodeContainers:
    """The containers of one node of one cluster, found by label (exited ones included)."""

    def __init__(self, client: Any, settings: DockerRuntimeSettings) -> None:
        self.client = client
        self.settings = settings

    def filters(self, **labels: str) -> dict[str, Any]:
        pairs = {LABEL_CLUSTER: self.settings.cluster, LABEL_NODE: self.settings.node_name, **labels}
        return {"label": [f"{k}={v}" for k, v in pairs.items()]}

    def find(self, pod_uid: str | None = None, *, sandbox: bool | None = None) -> list[Any]:
        """The node's containers (of pod ``pod_uid``); only pause containers, or none of them, when
        ``sandbox`` says."""
        labels = {LABEL_POD_UID: pod_uid} if pod_uid else {}
        with translated("list containers"):
            # ignore_removed: a container removed between the list and its inspect (another pod's
            # cleanup in flight) is simply not listed, instead of failing the whole listing.
            found = self.client.containers.list(all=True, filters=self.filters(**labels), ignore_removed=True)
        if sandbox is None:
            return list(found)
        return [c for c in found if (c.labels.get(LABEL_KIND) == KIND_SANDBOX) == sandbox]

    def sandbox(self, pod_uid: str) -> Any | None:
        """The newest pause container of the pod (a running one first)."""
        found = self.find(pod_uid, sandbox=True)
        if not found:
            return None
        found.sort(key=lambda c: (c.status == "running", c.attrs.get("Created", "")), reverse=True)
        return found[0]


def require_image(client: Any, image: str, policy: str) -> None:
    """Fail as a pull would when ``image`` is not usable under ``policy``: ``Always`` needs a registry,
    ``Never`` an image present, ``IfNotPresent`` an image present (nothing is ever pulled)."""
    if policy == "Always":
        raise ImagePullError(f'failed to pull image "{image}": no registry is reachable from this node '
                             "(imagePullPolicy: Always); build or load the image locally")
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        if policy == "Never":
            raise ImageNeverPullError(
                f'container image "{image}" is not present with pull policy of Never') from None
        raise ImagePullError(f'failed to pull image "{image}": not present locally and no registry is '
                             "reachable from this node; build or load it (kubelab image build|load)") from None
    except docker.errors.APIError as exc:
        raise ImagePullError(f'inspecting image "{image}": {exc.explanation or exc}') from exc
