"""Mesh CNI mode on a Docker node: a meshed pod's traffic capture, programmed when its sandbox is created.

In Istio's CNI mode the injector adds no ``istio-init`` container; the node's CNI plugin
(``istio-cni``) reads the pod's redirect annotations and installs the capture rules in the pod's
network namespace when the sandbox is set up, before any container runs. A Docker node plays that
role here: :class:`~kubelet.runtime.docker_sandbox.DockerSandboxes` calls :func:`capture_rules`
for each new sandbox and, when the pod asks for capture (see
:func:`machinery.meshcapture.node_capture_args`), :func:`apply_capture` with the pause
container's pid. The rules are the ones ``istio-init`` would install (the same
:mod:`machinery.meshcapture` text), loaded in one ``iptables-restore --noflush`` run inside the
pod's network namespace through ``nsenter --net=/proc/<pid>/ns/net`` (the kubelet of a Docker node
runs as root; ``nsenter`` is util-linux's).

A failure is the sandbox's failure: the caller removes the new sandbox and the kubelet reports
``FailedCreatePodSandBox`` and retries, so a pod never runs uncaptured. This check is why the
injector adds no ``istio-validation`` container, as Istio does in CNI mode: there the rules are
installed by a plugin that may be missing from the node's CNI chain, here by the component that
starts the containers.

Blocking (subprocesses): called from the runtime's worker threads.
"""

from __future__ import annotations

import shutil
import subprocess

from machinery.meshcapture import node_capture_args, parse_args, restore_input

__all__ = ["CaptureError", "apply_capture", "capture_rules"]

_TIMEOUT = 30.0


class CaptureError(Exception):
    """The pod's capture could not be computed or installed (the message says why)."""


def capture_rules(pod: dict[str, object]) -> str | None:
    """The ``iptables-restore`` input for ``pod``'s network namespace, or None when it asks for none."""
    try:
        args = node_capture_args(pod)
        if args is None:
            return None
        config, _ = parse_args(args)
    except (ValueError, SystemExit) as exc:  # argparse exits on flags it cannot parse
        raise CaptureError(f"mesh traffic capture: {exc}") from None
    return restore_input(config)


def _restore_binary() -> str:
    for name in ("iptables-restore", "iptables-nft-restore", "iptables-legacy-restore"):
        found = shutil.which(name)
        if found:
            return found
    raise CaptureError("mesh traffic capture: iptables-restore is not installed on this node")


def apply_capture(pid: int, rules: str) -> None:
    """Load ``rules`` into the ``nat`` table of the network namespace of process ``pid``."""
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise CaptureError("mesh traffic capture: nsenter is not installed on this node")
    command = [nsenter, f"--net=/proc/{pid}/ns/net", _restore_binary(), "--noflush"]
    try:
        done = subprocess.run(command, input=rules, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CaptureError(f"mesh traffic capture: {exc}") from None
    if done.returncode != 0:
        raise CaptureError(f"mesh traffic capture: iptables-restore exited with {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
