"""A ``kubelab up --nodes N`` cluster on real Docker for e2e tests, and the real kubectl against it.

Each cluster lives in a tmp state dir, so it has its own cluster name, pod network, service range
and iptables chains; the apiserver listens on a free port. ``running_cluster`` brings it up with
the real CLI and always tears it down with ``kubelab down``. Tests touch only its containers
(found by the cluster label).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from kubelab import laptop
from kubelab.testing import kubectl

CLUSTER_LABEL = "kubelab.dev/cluster"


@dataclass
class DockerCluster:
    """A running ``kubelab up`` in ``state_dir``."""

    state_dir: Path
    docker: docker.DockerClient
    up_args: list[str] = field(default_factory=lambda: ["--nodes", "2"])
    up_seconds: float = 0.0

    @property
    def cluster(self) -> str:
        return laptop.cluster_name(self.state_dir)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=self.kubeconfig, input=input, check=check, timeout=timeout)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def kubelab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelab", *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=300, check=False)

    def up(self) -> subprocess.CompletedProcess[str]:
        """``kubelab up`` (again: it starts whatever is not running) with this cluster's arguments."""
        return self.kubelab("up", "--port", "0", *self.up_args)

    def containers(self, **labels: str) -> list[Any]:
        selector = [f"{CLUSTER_LABEL}={self.cluster}", *(f"{k}={v}" for k, v in labels.items())]
        return list(self.docker.containers.list(all=True, filters={"label": selector}))


@contextmanager
def running_cluster(state_dir: Path, client: docker.DockerClient, *up_args: str) -> Iterator[DockerCluster]:
    """A cluster brought up with ``kubelab up --port 0 UP_ARGS`` and torn down with ``kubelab down``."""
    c = DockerCluster(state_dir, client, list(up_args) or ["--nodes", "2"])
    started = time.monotonic()
    result = c.up()
    c.up_seconds = time.monotonic() - started
    try:
        assert result.returncode == 0, f"kubelab up failed:\n{result.stdout}\n{result.stderr}"
        yield c
    finally:
        c.kubelab("down")
