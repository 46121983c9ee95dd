"""What a namespace looked like when a test failed: events, pods, logs of failed containers.

:mod:`kubelab.pytest_plugin` attaches :func:`namespace_state` to the report of a failed test
that used ``kubelab_namespace`` (a report section, printed beside the captured output), the way
CI scripts run ``kubectl get events`` and ``kubectl logs --previous`` after a failure. It reads
through :meth:`kubelab.testing_cluster.RunningCluster.request` and never raises: a part that
cannot be read says why in its place, so the dump never hides the failure it explains.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

__all__ = ["LOG_LINES", "failed_containers", "format_events", "format_pods", "namespace_state"]

LOG_LINES = 30
"""Lines of each failed container's log in the dump."""

Obj = dict[str, Any]


class Reader(Protocol):
    """The part of :class:`kubelab.testing_cluster.RunningCluster` the dump uses."""

    def get_json(self, path: str) -> Any: ...

    def request(self, method: str, path: str, *, body: Any = ..., accept: str = ...) -> tuple[int, bytes]: ...


def _event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def _event_order(event: Obj) -> tuple[str, int]:
    # Timestamps have whole seconds: within one, the order of writes (the resourceVersion) decides.
    version = str((event.get("metadata") or {}).get("resourceVersion") or "0")
    return _event_time(event), int(version) if version.isdigit() else 0


def format_events(events: list[Obj]) -> list[str]:
    """``TIME TYPE REASON KIND/NAME MESSAGE`` lines, oldest first (``kubectl get events`` order)."""
    lines = []
    for event in sorted(events, key=_event_order):
        involved = event.get("involvedObject") or event.get("regarding") or {}
        count = int(event.get("count") or 1)
        lines.append(" ".join([
            _event_time(event), str(event.get("type") or ""), str(event.get("reason") or ""),
            f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}",
            str(event.get("message") or event.get("note") or "").strip() + (f" (x{count})" if count > 1 else ""),
        ]))
    return lines


def _state(state: Obj | None) -> str:
    if not state:
        return "-"
    for kind, details in state.items():
        details = details or {}
        words = [kind]
        if details.get("reason"):
            words.append(str(details["reason"]))
        if "exitCode" in details:
            words.append(f"exitCode={details['exitCode']}")
        if details.get("message"):
            words.append(repr(str(details["message"])[:200]))
        return " ".join(words)
    return "-"


def format_pods(pods: list[Obj]) -> list[str]:
    """Per pod: phase, node, reason; its conditions; each container's readiness, restarts, state."""
    lines = []
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        status, spec = pod.get("status") or {}, pod.get("spec") or {}
        head = f"pod/{(pod.get('metadata') or {}).get('name')} phase={status.get('phase')} node={spec.get('nodeName')}"
        if status.get("reason") or status.get("message"):
            head += f" reason={status.get('reason')} message={status.get('message')!r}"
        lines.append(head)
        for condition in status.get("conditions") or []:
            extra = " ".join(str(condition[k]) for k in ("reason", "message") if condition.get(k))
            lines.append(f"  condition {condition.get('type')}={condition.get('status')} {extra}".rstrip())
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for container in status.get(key) or []:
                lines.append(
                    f"  container {container.get('name')} ready={container.get('ready')} "
                    f"restarts={container.get('restartCount', 0)} state={_state(container.get('state'))} "
                    f"last={_state(container.get('lastState'))}"
                )
    return lines


def _terminated_badly(state: Obj | None) -> bool:
    terminated: Obj | None = (state or {}).get("terminated")
    return terminated is not None and int(terminated.get("exitCode") or 0) != 0


def failed_containers(pod: Obj) -> list[tuple[str, bool]]:
    """(container, previous): containers that exited non-zero, now or in their last run.

    ``previous`` is True when the failure is the last run's (``kubectl logs --previous``).
    """
    found = []
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            name = str(container.get("name"))
            if _terminated_badly(container.get("state")):
                found.append((name, False))
            elif _terminated_badly(container.get("lastState")):
                found.append((name, True))
    return found


def _log_tail(reader: Reader, namespace: str, pod: str, container: str, previous: bool) -> list[str]:
    path = (f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log?container={quote(container)}"
            f"&tailLines={LOG_LINES}" + ("&previous=true" if previous else ""))
    try:
        status, data = reader.request("GET", path, accept="*/*")
    except OSError as exc:
        return [f"(logs unavailable: {exc})"]
    text = data.decode(errors="replace")
    if status != 200:
        return [f"(logs unavailable: HTTP {status}: {text[:200]})"]
    return text.splitlines()[-LOG_LINES:] or ["(empty log)"]


def _items(reader: Reader, path: str) -> list[Obj] | str:
    try:
        items: list[Obj] = list(reader.get_json(path).get("items") or [])
    except (OSError, ValueError, AttributeError) as exc:
        return f"(cannot list {path}: {exc})"
    return items


def namespace_state(reader: Reader, namespace: str) -> str:
    """The dump of ``namespace``: its events, its pods, the log tails of its failed containers."""
    ns = quote(namespace)
    out = [f"=== events in {namespace}"]
    events = _items(reader, f"/api/v1/namespaces/{ns}/events")
    out.extend([events] if isinstance(events, str) else (format_events(events) or ["(none)"]))
    out.append(f"=== pods in {namespace}")
    pods = _items(reader, f"/api/v1/namespaces/{ns}/pods")
    if isinstance(pods, str):
        out.append(pods)
        return "\n".join(out)
    out.extend(format_pods(pods) or ["(none)"])
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name"))
        for container, previous in failed_containers(pod):
            out.append(f"=== logs of {name}/{container}{' (previous run)' if previous else ''}, last {LOG_LINES} lines")
            out.extend(_log_tail(reader, namespace, name, container, previous))
    return "\n".join(out)
