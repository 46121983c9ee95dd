"""How each process of a cluster is started: its command line and its kubeconfig.

The argv of ``kubelab apiserver``, ``kubelab scheduler``, ``kubelab controller-manager``,
``kubelab meshd`` and ``kubelab kubelet`` all begin with :func:`kubelab_command` (one place, so
tests can swap it for a stand-in); :func:`python_env` makes that ``python -m kubelab`` work from
any working directory. :func:`component_kubeconfig` gives each component its own identity: a
fresh client certificate from the cluster CA (``system:kube-scheduler``,
``system:node:<node>`` in ``system:nodes`` ...). Called by ``kubelab up``
(:mod:`kubelab.cluster_up`), the supervisor and the test harness (:mod:`kubelab.testing`); the
processes themselves are started by :mod:`kubelab.launcher`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import kubelab
from kubelab.readiness import NotReadyError, apiserver_url
from machinery.kubeconfig import write_kubeconfig
from machinery.pki import ensure_cluster_pki

__all__ = [
    "APISERVER",
    "CONTROLLER_MANAGER",
    "SCHEDULER",
    "apiserver_command",
    "component_command",
    "component_kubeconfig",
    "kubelab_command",
    "kubelet_command",
    "python_env",
]

# Process names (pid file, log, supervisor entry) and, for the components, their subcommands.
APISERVER = "apiserver"
SCHEDULER = "scheduler"
CONTROLLER_MANAGER = "controller-manager"


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python: ours, with kubelab's source root on PYTHONPATH.

    That makes ``python -m kubelab`` work from any working directory, installed or not.
    """
    env = dict(os.environ)
    source_root = str(Path(kubelab.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if source_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([source_root, *paths])
    env.update(extra or {})
    return env


def kubelab_command() -> list[str]:
    """How to run the ``kubelab`` CLI in a child process (tests replace this with a stand-in)."""
    return [sys.executable, "-m", "kubelab"]


def apiserver_command(
    *,
    state_dir: Path,
    store: str = "sqlite",
    etcd_servers: Sequence[str] = (),
    etcd_prefix: str = "",
    port: int = 6443,
    bind_address: str = "127.0.0.1",
    verbose: int = 0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv of ``kubelab apiserver`` for these settings (``extra_args`` appended as given)."""
    argv = [
        *kubelab_command(),
        APISERVER,
        "--state-dir",
        str(state_dir),
        "--store",
        store,
        "--bind-address",
        bind_address,
        "--port",
        str(port),
    ]
    if etcd_servers:
        argv += ["--etcd-servers", ",".join(etcd_servers)]
    if etcd_prefix:
        argv += ["--etcd-prefix", etcd_prefix]
    argv += ["-v"] * verbose
    argv += list(extra_args)
    return argv


def component_kubeconfig(state_dir: Path, name: str, *, user: str, groups: Sequence[str] = ()) -> Path:
    """Write ``state_dir/kubeconfigs/<name>.kubeconfig`` for ``user`` in ``groups`` (a fresh client
    certificate from the cluster CA) pointing at the running apiserver; return its path."""
    url = apiserver_url(state_dir)
    if url is None:
        raise NotReadyError("the apiserver has not written apiserver.port yet")
    pki = ensure_cluster_pki(state_dir / "pki")
    cert_pem, key_pem = pki.issue_client_certificate(user, list(groups))
    path = state_dir / "kubeconfigs" / f"{name}.kubeconfig"
    write_kubeconfig(path, server=url, ca_pem=pki.ca_pem, client_cert_pem=cert_pem, client_key_pem=key_pem,
                     user=user)
    return path


def component_command(component: str, *, kubeconfig: Path, extra_args: Sequence[str] = ()) -> list[str]:
    """The argv of ``kubelab scheduler`` or ``kubelab controller-manager``."""
    return [*kubelab_command(), component, "--kubeconfig", str(kubeconfig), *extra_args]


def kubelet_command(
    *, kubeconfig: Path, node_name: str, hollow: bool = False, count: int = 1, extra_args: Sequence[str] = ()
) -> list[str]:
    """The argv of ``kubelab kubelet``."""
    argv = [*kubelab_command(), "kubelet", "--kubeconfig", str(kubeconfig), "--node-name", node_name]
    if hollow:
        argv += ["--hollow", "--count", str(count)]
    return [*argv, *extra_args]
