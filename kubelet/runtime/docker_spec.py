"""Pure translation between Kubernetes pod specs and Docker container configs, and back.

Used by :mod:`kubelet.runtime.docker` (nothing here talks to Docker, so it is unit-testable):

* the labels every kubelab container carries (cluster, node, pod uid/namespace/name, container
  name, kind, restart count) and the container names (``k8s_<container>_<pod>_<ns>_<uid>_<n>``,
  the dockershim shape);
* a container spec entry → keyword arguments of ``docker.containers.create``: Kubernetes
  ``command``/``args`` semantics against the image's Entrypoint/Cmd, env, bind mounts,
  resources (limits.cpu → ``nano_cpus``, limits.memory → ``mem_limit``, requests.cpu →
  ``cpu_shares``), securityContext (user, capabilities, privileged, read-only root);
* ``imagePullPolicy`` (no registry is reachable: a pull is always an ``ErrImagePull``);
* a ``docker inspect`` document → :class:`ContainerStatus` with Kubernetes exit reasons.

Malformed specs raise :class:`CreateContainerConfigError` (a :class:`RuntimeError_`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubelet.runtime.interface import ContainerKind, ContainerState, ContainerStatus, RuntimeError_
from machinery.quantity import parse_quantity

__all__ = [
    "KIND_APP",
    "KIND_INIT",
    "KIND_SANDBOX",
    "LABEL_ATTEMPT",
    "LABEL_CLUSTER",
    "LABEL_CONTAINER",
    "LABEL_KIND",
    "LABEL_NAMESPACE",
    "LABEL_NODE",
    "LABEL_POD_NAME",
    "LABEL_POD_UID",
    "PRESTOP_LABEL",
    "SANDBOX_CONTAINER_NAME",
    "CreateContainerConfigError",
    "ImageNeverPullError",
    "ImagePullError",
    "container_config",
    "container_labels",
    "container_name",
    "host_ports",
    "kind_label",
    "parse_docker_time",
    "pull_policy",
    "resolv_conf",
    "status_from_inspect",
    "stop_timeout",
]

LABEL_CLUSTER = "kubelab.dev/cluster"
LABEL_NODE = "kubelab.dev/node"
LABEL_KIND = "kubelab.dev/kind"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_CONTAINER = "io.kubernetes.container.name"
LABEL_ATTEMPT = "io.kubernetes.container.restartCount"

KIND_SANDBOX = "sandbox"
KIND_INIT = "init"
KIND_APP = "app"
PRESTOP_LABEL = "kubelab.dev/pre-stop"
"""The container's ``lifecycle.preStop.exec.command`` as a JSON list (run by ``stop_container``)."""
SANDBOX_CONTAINER_NAME = "POD"
"""The container name label of the pause container (dockershim's name for it)."""

_ZERO_TIME = "0001-01-01T00:00:00Z"


class CreateContainerConfigError(RuntimeError_):
    """The container spec cannot be turned into a Docker config (bad quantity, bad user...)."""

    reason = "CreateContainerConfigError"


class ImagePullError(RuntimeError_):
    """The image would have to be pulled, and no registry is reachable from this machine."""

    reason = "ErrImagePull"


class ImageNeverPullError(RuntimeError_):
    """``imagePullPolicy: Never`` and the image is not present locally."""

    reason = "ErrImageNeverPull"


# -- identity ---------------------------------------------------------------------------------
def kind_label(kind: ContainerKind) -> str:
    return KIND_INIT if kind is ContainerKind.INIT else KIND_APP


def container_labels(
    pod: Mapping[str, Any], *, cluster: str, node: str, container: str, kind: str, attempt: int
) -> dict[str, str]:
    """Everything a restarted kubelet needs to rebuild its view of this container."""
    meta = pod["metadata"]
    return {
        LABEL_CLUSTER: cluster,
        LABEL_NODE: node,
        LABEL_KIND: kind,
        LABEL_POD_UID: str(meta["uid"]),
        LABEL_NAMESPACE: str(meta.get("namespace") or ""),
        LABEL_POD_NAME: str(meta["name"]),
        LABEL_CONTAINER: container,
        LABEL_ATTEMPT: str(attempt),
    }


def container_name(pod: Mapping[str, Any], container: str, attempt: int) -> str:
    """``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>``: unique per attempt, readable in ``docker ps``."""
    meta = pod["metadata"]
    return f"k8s_{container}_{meta['name']}_{meta.get('namespace') or ''}_{meta['uid']}_{attempt}"


# -- images -----------------------------------------------------------------------------------
def pull_policy(container: Mapping[str, Any]) -> str:
    """The effective ``imagePullPolicy``: Kubernetes defaults to ``Always`` for ``:latest`` or no tag."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image") or "")
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


# -- create config ----------------------------------------------------------------------------
def _quantity(value: Any, field: str) -> Any:
    try:
        return parse_quantity(value)
    except ValueError as exc:
        raise CreateContainerConfigError(f"invalid {field} {value!r}: {exc}") from exc


def _resources(container: Mapping[str, Any]) -> dict[str, Any]:
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    out: dict[str, Any] = {}
    if "cpu" in limits:
        out["nano_cpus"] = _quantity(limits["cpu"], "limits.cpu").milli_value() * 1_000_000
    if "memory" in limits:
        memory = _quantity(limits["memory"], "limits.memory").value()
        out["mem_limit"] = memory
        out["memswap_limit"] = memory  # no swap beyond the limit, as the kubelet configures it
    request = requests.get("cpu", limits.get("cpu"))  # the apiserver defaults requests to limits
    if request is not None:
        # Kubernetes' MilliCPUToShares: 1 CPU = 1024 shares, at least 2.
        out["cpu_shares"] = max(_quantity(request, "requests.cpu").milli_value() * 1024 // 1000, 2)
    return out


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    ctx = container.get("securityContext") or {}
    out: dict[str, Any] = {}
    user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    group = ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    if user is not None or group is not None:
        try:
            uid = int(user) if user is not None else 0  # runAsGroup alone: root's uid, that group
            out["user"] = f"{uid}:{int(group)}" if group is not None else str(uid)
        except (TypeError, ValueError) as exc:
            raise CreateContainerConfigError(f"invalid runAsUser/runAsGroup: {exc}") from exc
    caps = ctx.get("capabilities") or {}
    if caps.get("add"):
        out["cap_add"] = [str(c) for c in caps["add"]]
    if caps.get("drop"):
        out["cap_drop"] = [str(c) for c in caps["drop"]]
    if ctx.get("privileged"):
        out["privileged"] = True
    if ctx.get("readOnlyRootFilesystem"):
        out["read_only"] = True
    return out


def _command(container: Mapping[str, Any]) -> dict[str, Any]:
    """Kubernetes semantics: ``command`` replaces the Entrypoint (and drops the image's Cmd),
    ``args`` replaces the Cmd; neither keeps the image's defaults."""
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    out: dict[str, Any] = {}
    if command:
        out["entrypoint"] = command
        out["command"] = args  # the daemon keeps the image's Cmd only when no Entrypoint is given
    elif args:
        out["command"] = args
    return out


def _env(env: Sequence[Mapping[str, Any]] | None, container: Mapping[str, Any]) -> list[str]:
    if env is None:  # not resolved by the kubelet: the literal values only
        env = [e for e in container.get("env") or [] if "valueFrom" not in e]
    return [f"{e['name']}={e.get('value') or ''}" for e in env]


def _mounts(mounts: Sequence[Mapping[str, Any]] | None) -> list[Any]:
    from docker.types import Mount  # imported late: the pure parts of this module need no SDK

    return [
        Mount(target=str(m["containerPath"]), source=str(m["hostPath"]), type="bind",
              read_only=bool(m.get("readOnly", False)))
        for m in mounts or []
    ]


def container_config(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    sandbox_id: str,
    labels: Mapping[str, str],
    name: str,
    env: Sequence[Mapping[str, Any]] | None = None,
    mounts: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``client.containers.create`` for one attempt of ``container``,
    joining the network and IPC namespaces of the pause container ``sandbox_id``."""
    labels = dict(labels)
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}
    if pre_stop.get("command"):
        labels[PRESTOP_LABEL] = json.dumps([str(c) for c in pre_stop["command"]])
    config: dict[str, Any] = {
        "image": str(container["image"]),
        "name": name,
        "labels": labels,
        "environment": _env(env, container),
        "network_mode": f"container:{sandbox_id}",
        "ipc_mode": f"container:{sandbox_id}",
        "detach": True,
    }
    if container.get("workingDir"):
        config["working_dir"] = str(container["workingDir"])
    if container.get("tty"):
        config["tty"] = True
    if container.get("stdin"):
        config["stdin_open"] = True
    docker_mounts = _mounts(mounts)
    if docker_mounts:
        config["mounts"] = docker_mounts
    config.update(_command(container))
    config.update(_resources(container))
    config.update(_security(pod, container))
    return config


# -- host ports -------------------------------------------------------------------------------
def host_ports(pod: Mapping[str, Any], host_ip: str) -> dict[str, tuple[str, int]]:
    """``ports`` of ``docker run`` for the pod's ``hostPort`` entries (published on ``hostIP`` or ``host_ip``)."""
    spec = pod.get("spec") or {}
    ports: dict[str, tuple[str, int]] = {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                key = f"{port['containerPort']}/{str(port.get('protocol') or 'TCP').lower()}"
                ports[key] = (str(port.get("hostIP") or host_ip), int(port["hostPort"]))
    return ports


# -- DNS --------------------------------------------------------------------------------------
def resolv_conf(servers: Sequence[str], searches: Sequence[str], options: Sequence[str]) -> str:
    """The pod's ``/etc/resolv.conf``, written over the sandbox's own as dockershim did: on a user-defined
    network Docker would otherwise point every container at its embedded resolver (127.0.0.11) and only
    forward to ``servers``, so pods would not see the cluster DNS ClusterIP they see on Kubernetes."""
    lines = [f"search {' '.join(searches)}"] if searches else []
    lines += [f"nameserver {server}" for server in servers]
    if options:
        lines.append(f"options {' '.join(options)}")
    return "\n".join(lines) + "\n"


# -- inspect → status -------------------------------------------------------------------------
def parse_docker_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; the zero time means "never"."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.rstrip("Z")
    offset = "+00:00"
    for sign in ("+", "-"):
        head, sep, tail = text.rpartition(sign)
        if sep and "T" in head and ":" in tail and len(tail) == 5:
            text, offset = head, sign + tail
            break
    if "." in text:
        base, frac = text.split(".", 1)
        text = f"{base}.{frac[:6].ljust(6, '0')}"
    parsed = datetime.fromisoformat(text + offset)
    return parsed.astimezone(UTC)


def status_from_inspect(attrs: Mapping[str, Any]) -> ContainerStatus:
    """A :class:`ContainerStatus` from a ``docker inspect`` document of a kubelab container."""
    labels: Mapping[str, str] = (attrs.get("Config") or {}).get("Labels") or {}
    state: Mapping[str, Any] = attrs.get("State") or {}
    created = parse_docker_time(attrs.get("Created")) or datetime.now(UTC)
    started = parse_docker_time(state.get("StartedAt"))
    finished = parse_docker_time(state.get("FinishedAt"))
    docker_state = str(state.get("Status") or "")
    exit_code: int | None = None
    reason = message = ""
    if docker_state == "running" or docker_state == "paused" or docker_state == "restarting":
        container_state = ContainerState.RUNNING
    elif docker_state == "created" and state.get("Error"):
        # The start failed (no such executable, bad mount...): it never ran.
        container_state = ContainerState.EXITED
        exit_code = int(state.get("ExitCode") or 128)
        reason, message = "ContainerCannotRun", str(state.get("Error"))
        finished = finished or created
    elif docker_state == "created":
        container_state = ContainerState.CREATED
    elif docker_state in ("exited", "dead"):
        container_state = ContainerState.EXITED
        exit_code = int(state.get("ExitCode") or 0)
        if state.get("OOMKilled"):
            reason = "OOMKilled"
        elif exit_code == 0:
            reason = "Completed"
        else:
            reason = "Error"
        message = str(state.get("Error") or "")
    else:
        container_state = ContainerState.UNKNOWN
    if finished is not None and started is not None and finished < started:
        finished = started  # Docker stamps a very short run's start after its finish
    kind = ContainerKind.INIT if labels.get(LABEL_KIND) == KIND_INIT else ContainerKind.REGULAR
    try:
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
    except ValueError:
        attempt = 0
    image = str((attrs.get("Config") or {}).get("Image") or "")
    return ContainerStatus(
        id=str(attrs["Id"]),
        pod_uid=labels.get(LABEL_POD_UID, ""),
        name=labels.get(LABEL_CONTAINER, ""),
        kind=kind,
        attempt=attempt,
        image=image,
        image_id=f"docker://{attrs['Image']}" if attrs.get("Image") else "",
        state=container_state,
        created_at=created,
        started_at=started,
        finished_at=finished if container_state is ContainerState.EXITED else None,
        exit_code=exit_code,
        reason=reason,
        message=message,
    )


def stop_timeout(seconds: float) -> int:
    """Docker takes whole seconds: round a grace period up (never below 0)."""
    return max(math.ceil(seconds), 0)
