"""Shared pieces of the kubectl compatibility suite: a cluster per store and a kubectl runner.

``KubectlCluster`` wraps one running apiserver (``kubelab.testing.start_apiserver``) and runs
the real kubectl binaries against it; each test works in its own namespace so one apiserver
per store serves the whole module.
"""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kubelab.testing import RunningApiServer, kubectl

_counter = itertools.count()


@dataclass
class KubectlCluster:
    """A running apiserver plus helpers to drive it with the real kubectl."""

    server: RunningApiServer
    store: str
    workdir: Path
    _namespaces: list[str] = field(default_factory=list)

    def run(self, *args: str, version: str | None = None, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=self.server.kubeconfig, version=version, input=input, check=check,
                       timeout=timeout)

    def namespace(self, prefix: str) -> str:
        """A fresh namespace for one test."""
        name = f"{prefix}-{next(_counter)}"
        self.run("create", "namespace", name)
        self._namespaces.append(name)
        return name

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path
