"""Container environment: ``env``/``envFrom`` resolved the way the kubelet's ``makeEnvironmentVariables`` does.

Called by ``kubelet.containerstart`` before each container is created (the resolved spec goes to the runtime);
``kubelet.volumes`` reuses :func:`field_value` and :func:`resource_value` for downwardAPI files.

Guarantees, as Kubernetes:

* ``envFrom`` sources first, in order (``prefix`` prepended; keys containing ``=`` skipped), then
  ``env`` entries, a later name overriding an earlier one at its first position;
* ``value`` strings get ``$(VAR)`` expansion against the variables defined before them (``$$``
  escapes, an unknown or unclosed reference stays as written); ``valueFrom`` results are literal;
* a missing ConfigMap/Secret (or key) is skipped when ``optional: true``, otherwise
  :class:`ContainerConfigError` (the waiting reason ``CreateContainerConfigError``) with
  Kubernetes' message, e.g. ``configmap "app" not found`` or
  ``couldn't find key color in ConfigMap default/app``;
* ``resourceFieldRef`` divides by ``divisor`` rounding up; an unset limit falls back to the node's
  allocatable, an unset request to 0.

ConfigMaps and Secrets are read through an :class:`ObjectSource` (:class:`ApiObjectSource` GETs them).

Service variables come first, as the kubelet's ``getServiceEnvVarMap`` makes them (when the source
is also a :class:`ServiceSource`): the ``default/kubernetes`` Service always
(``KUBERNETES_SERVICE_HOST``/``_PORT`` …, what in-cluster clients read), and every Service of the
pod's namespace with a ClusterIP unless ``enableServiceLinks: false`` — ``<NAME>_SERVICE_HOST``,
``<NAME>_SERVICE_PORT[_<PORTNAME>]`` and the Docker-link style ``<NAME>_PORT[_<port>_<PROTO>[_PROTO|_PORT|_ADDR]]``.
The container's own ``env`` may refer to them and override them.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from kubelet.runtime.interface import RuntimeError_
from machinery.client.rest import ApiClient
from machinery.errors import NotFoundError
from machinery.quantity import Quantity
from machinery.resources import CONFIGMAPS, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES, SECRETS, SERVICES

__all__ = [
    "ApiObjectSource",
    "ContainerConfigError",
    "NodeAllocatable",
    "ObjectSource",
    "PodContext",
    "ServiceSource",
    "expand",
    "field_value",
    "prepare_container",
    "resolve_env",
    "resource_value",
    "service_environment",
    "service_variables",
]


class ContainerConfigError(RuntimeError_):
    """The container's configuration cannot be built (missing ConfigMap/Secret/key, bad fieldRef)."""

    reason = "CreateContainerConfigError"


class ObjectSource(Protocol):
    """Where ConfigMaps and Secrets come from (``None``: not found)."""

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        ...

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        ...


@runtime_checkable
class ServiceSource(Protocol):
    """Where the Services for service-link variables come from."""

    async def list_services(self, namespace: str) -> list[dict[str, Any]]:
        ...


class ApiObjectSource:
    """Reads ConfigMaps and Secrets with GETs (always current; one request per reference), and
    lists Services for the service-link variables."""

    async def list_services(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.client.list(SERVICES, namespace=namespace))["items"]
        return items

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(CONFIGMAPS, name, namespace=namespace)
        except NotFoundError:
            return None

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(SECRETS, name, namespace=namespace)
        except NotFoundError:
            return None

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(PERSISTENTVOLUMECLAIMS, name, namespace=namespace)
        except NotFoundError:
            return None

    async def get_volume(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(PERSISTENTVOLUMES, name)
        except NotFoundError:
            return None


@dataclass(frozen=True)
class NodeAllocatable:
    """Defaults for ``resourceFieldRef`` limits the container does not set."""

    cpu: str = "4"
    memory: str = "8Gi"
    ephemeral_storage: str = "100Gi"


@dataclass(frozen=True)
class PodContext:
    """What a pod's environment may refer to beyond its spec: addresses known only at run time."""

    pod_ip: str = ""
    host_ip: str = ""
    allocatable: NodeAllocatable = NodeAllocatable()


# -- $(VAR) expansion ------------------------------------------------------------------------
def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` → ``$``; an unknown or unclosed reference is kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 >= n:
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# -- downward API values ----------------------------------------------------------------------
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: dict[str, Any], path: str, ctx: PodContext) -> str:
    """The value of a ``fieldRef.fieldPath`` (ContainerConfigError for an unsupported path)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    match = _SUBSCRIPT.match(path)
    if match is not None:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: str(meta.get("name", "")),
        "metadata.namespace": lambda: str(meta.get("namespace", "")),
        "metadata.uid": lambda: str(meta.get("uid", "")),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
        "spec.nodeName": lambda: str(spec.get("nodeName", "")),
        "spec.serviceAccountName": lambda: str(spec.get("serviceAccountName", "")),
        "status.podIP": lambda: ctx.pod_ip or str((pod.get("status") or {}).get("podIP", "")),
        "status.podIPs": lambda: ctx.pod_ip or str((pod.get("status") or {}).get("podIP", "")),
        "status.hostIP": lambda: ctx.host_ip or str((pod.get("status") or {}).get("hostIP", "")),
        "status.hostIPs": lambda: ctx.host_ip or str((pod.get("status") or {}).get("hostIP", "")),
    }
    getter = simple.get(path)
    if getter is None:
        raise ContainerConfigError(f"unsupported fieldPath: {path}")
    return getter()


def _format_map(values: Mapping[str, Any]) -> str:
    """Labels/annotations as downwardAPI files show them: ``key="value"`` lines, sorted."""
    return "\n".join(f"{k}={_quote(str(v))}" for k, v in sorted(values.items()))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def resource_value(pod: dict[str, Any], container_name: str, ref: Mapping[str, Any], ctx: PodContext) -> str:
    """The value of a ``resourceFieldRef`` for ``container_name`` (ref's ``containerName`` wins)."""
    name = str(ref.get("containerName") or container_name)
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    container = next((c for c in containers if c.get("name") == name), None)
    if container is None:
        raise ContainerConfigError(f"container {name} not found in pod")
    resource = str(ref.get("resource", ""))
    kind, _, what = resource.partition(".")
    if kind not in ("limits", "requests") or what not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(f"unsupported container resource: {resource}")
    values = (container.get("resources") or {}).get(kind) or {}
    raw = values.get(what)
    if raw is None and kind == "limits":
        raw = {"cpu": ctx.allocatable.cpu, "memory": ctx.allocatable.memory,
               "ephemeral-storage": ctx.allocatable.ephemeral_storage}[what]
    if raw is None and kind == "requests":
        # An unset request defaults to the limit when one is set (API defaulting), else zero.
        raw = ((container.get("resources") or {}).get("limits") or {}).get(what, "0")
    divisor = Quantity.parse(str(ref.get("divisor") or "1"))
    quantity = Quantity.parse(str(raw))
    if divisor.is_zero():
        raise ContainerConfigError(f"invalid divisor for {resource}: 0")
    if what == "cpu":
        return str(math.ceil(quantity.milli_value() / divisor.milli_value()))
    return str(math.ceil(quantity.value() / divisor.value()))


# -- env resolution ---------------------------------------------------------------------------
def _decode_secret(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", errors="replace")


async def _source_values(source: ObjectSource, namespace: str, ref: Mapping[str, Any],
                         *, secret: bool) -> dict[str, str] | None:
    name = str(ref.get("name", ""))
    if secret:
        obj = await source.get_secret(namespace, name)
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'secret "{name}" not found')
        return {k: _decode_secret(str(v)) for k, v in (obj.get("data") or {}).items()} | {
            k: str(v) for k, v in (obj.get("stringData") or {}).items()}
    obj = await source.get_configmap(namespace, name)
    if obj is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'configmap "{name}" not found')
    return {k: str(v) for k, v in (obj.get("data") or {}).items()}


async def _key_ref(source: ObjectSource, namespace: str, ref: Mapping[str, Any], *, secret: bool) -> str | None:
    values = await _source_values(source, namespace, ref, secret=secret)
    if values is None:
        return None
    key = str(ref.get("key", ""))
    if key not in values:
        if ref.get("optional"):
            return None
        kind = "Secret" if secret else "ConfigMap"
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name', '')}")
    return values[key]


async def resolve_env(pod: dict[str, Any], container: Mapping[str, Any], source: ObjectSource,
                      ctx: PodContext, *, initial: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """The container's environment as ordered (name, value) pairs (ContainerConfigError);
    ``initial`` variables (the service ones) may be referred to but are not returned."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    env: dict[str, str] = dict(initial or {})
    given = set(env)
    for item in container.get("envFrom") or []:
        prefix = str(item.get("prefix") or "")
        if item.get("configMapRef") is not None:
            values = await _source_values(source, namespace, item["configMapRef"], secret=False)
        elif item.get("secretRef") is not None:
            values = await _source_values(source, namespace, item["secretRef"], secret=True)
        else:
            continue
        for key, value in (values or {}).items():
            name = prefix + key
            if name and "=" not in name:
                env[name] = value
    for item in container.get("env") or []:
        name = str(item["name"])
        value_from = item.get("valueFrom")
        if value_from is None:
            env[name] = expand(str(item.get("value") or ""), env.get)
            continue
        resolved: str | None
        if value_from.get("configMapKeyRef") is not None:
            resolved = await _key_ref(source, namespace, value_from["configMapKeyRef"], secret=False)
        elif value_from.get("secretKeyRef") is not None:
            resolved = await _key_ref(source, namespace, value_from["secretKeyRef"], secret=True)
        elif value_from.get("fieldRef") is not None:
            resolved = field_value(pod, str(value_from["fieldRef"].get("fieldPath", "")), ctx)
        elif value_from.get("resourceFieldRef") is not None:
            resolved = resource_value(pod, str(container.get("name", "")), value_from["resourceFieldRef"], ctx)
        else:
            resolved = ""
        if resolved is not None:
            env[name] = resolved
    return [(k, v) for k, v in env.items() if k not in given or v != (initial or {}).get(k)]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_variables(services: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The variables of ``services`` (Kubernetes' ``envvars.FromServices``), sorted by Service name."""
    out: list[tuple[str, str]] = []
    for svc in sorted(services, key=lambda s: str(s["metadata"].get("name", ""))):
        spec = svc.get("spec") or {}
        ip = str(spec.get("clusterIP") or "")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = _env_name(str(svc["metadata"]["name"]))
        out += [(f"{name}_SERVICE_HOST", ip), (f"{name}_SERVICE_PORT", str(ports[0]["port"]))]
        out += [(f"{name}_SERVICE_PORT_{_env_name(str(p['name']))}", str(p["port"])) for p in ports if p.get("name")]
        host = f"[{ip}]" if ":" in ip else ip
        for index, port in enumerate(ports):
            proto = str(port.get("protocol") or "TCP")
            url = f"{proto.lower()}://{host}:{port['port']}"
            if index == 0:
                out.append((f"{name}_PORT", url))
            prefix = f"{name}_PORT_{port['port']}_{proto.upper()}"
            out += [(prefix, url), (f"{prefix}_PROTO", proto.lower()), (f"{prefix}_PORT", str(port["port"])),
                    (f"{prefix}_ADDR", ip)]
    return out


async def service_environment(pod: dict[str, Any], source: ServiceSource) -> list[tuple[str, str]]:
    """The service variables a container of ``pod`` starts with."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    chosen: dict[str, dict[str, Any]] = {}
    if links:
        chosen.update({str(s["metadata"]["name"]): s for s in await source.list_services(namespace)})
    if "kubernetes" not in chosen or namespace != "default":
        master = [s for s in await source.list_services("default") if s["metadata"].get("name") == "kubernetes"]
        if master:
            chosen.setdefault("kubernetes", master[0])
    return service_variables(list(chosen.values()))


async def prepare_container(pod: dict[str, Any], container: Mapping[str, Any], source: ObjectSource,
                            ctx: PodContext) -> dict[str, Any]:
    """A copy of ``container`` for the runtime: ``env`` resolved (after the service variables),
    ``envFrom`` dropped, and ``$(VAR)`` expanded in ``command`` and ``args`` (as Kubernetes does)."""
    services = await service_environment(pod, source) if isinstance(source, ServiceSource) else []
    env = services + await resolve_env(pod, container, source, ctx, initial=dict(services))
    env = list(dict(env).items())
    lookup = dict(env).get
    prepared = dict(container)
    prepared.pop("envFrom", None)
    prepared["env"] = [{"name": name, "value": value} for name, value in env]
    for field_ in ("command", "args"):
        if container.get(field_):
            prepared[field_] = [expand(str(part), lookup) for part in container[field_]]
    return prepared
