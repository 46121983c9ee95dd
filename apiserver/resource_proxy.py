"""The ``proxy`` subresource of pods, services and nodes: HTTP relayed to what they name.

``GET /api/v1/namespaces/default/pods/web-0:80/proxy/index.html`` (what ``kubectl proxy`` plus
``curl localhost:8001/…`` sends in the Kubernetes Basics tutorial) is relayed, method, query,
body and end-to-end headers included, to the target below; the answer comes back as it is
(status, headers, a streamed body). The name part is ``[scheme:]name[:port]`` as on Kubernetes
(``https:web:8443``); the scheme defaults to http.

* ``pods/{name}[:port]/proxy/…`` → the pod's IP (``status.podIP``) and the port: a number, a
  container port's name, or 80 when none is given;
* ``services/{name}[:port]/proxy/…`` → one ready endpoint of the service (its ``Endpoints``
  object, the port matched by the service port's name or number, the first when none is
  given), chosen at random as kube-apiserver does;
* ``nodes/{name}[:port]/proxy/…`` → the node's kubelet (its InternalIP and reported port, over
  TLS with the apiserver's kubelet-client certificate: ``/healthz``, ``/containerLogs/…``), or
  ``http(s)://InternalIP:port`` when a port is given.

Every destination passes ``machinery.netguard`` (the connector refuses anything outside
loopback and the cluster's networks; a refusal is a 503 Status). Failures before the answer
starts are Statuses: no such object (404), nothing ready (503 ``no endpoints available for
service``), an unreachable target (503). Not done: kube-apiserver rewrites absolute links in
proxied HTML and ``Location`` headers to stay under the proxy path; pages that use relative
links work as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from apiserver.context import ApiContext
from apiserver.proxy import kubelet_base, kubelet_client_ssl_context
from apiserver.routing import RequestTarget
from machinery.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from machinery.netguard import check_destination, guarded_connector
from machinery.resources import lookup

__all__ = ["handle_proxy", "proxy_verb", "split_proxy_name"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailers", "transfer-encoding", "upgrade", "host", "authorization", "content-length"})
_CONNECT_TIMEOUT = 10.0
_VERBS = {"GET": "get", "HEAD": "get", "OPTIONS": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}


def split_proxy_name(raw: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` → (scheme, name, port); scheme and port may be empty."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise BadRequestError(f"invalid proxy name {raw!r}: expected [scheme:]name[:port]")


def _proxied_path(request: web.Request) -> str:
    """What follows ``/proxy`` in the raw path (``/`` when nothing does)."""
    raw = request.raw_path.split("?", 1)[0]
    _, _, tail = raw.partition("/proxy")
    return tail or "/"


def _port_number(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadRequestError(f"invalid port {text!r} for {what}")
    return int(text)


async def _pod_target(ctx: ApiContext, target: RequestTarget, name: str, port: str) -> tuple[str, int]:
    pod = await ctx.registry(target.resource).get(target.namespace, name)
    ip = str((pod.get("status") or {}).get("podIP") or "")
    if not ip:
        raise ServiceUnavailableError(f'pod "{name}" has no IP address (it is not running yet)')
    if not port:
        return ip, 80
    if port.isdigit():
        return ip, _port_number(port, f"pod {name}")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == port:
                return ip, int(declared["containerPort"])
    raise BadRequestError(f'pod "{name}" has no container port named "{port}"')


async def _service_target(ctx: ApiContext, target: RequestTarget, name: str, port: str) -> tuple[str, int]:
    service = await ctx.registry(target.resource).get(target.namespace, name)
    ports = (service.get("spec") or {}).get("ports") or []
    chosen = ports[0] if ports and not port else next(
        (p for p in ports if p.get("name") == port or str(p.get("port")) == port), None)
    if chosen is None:
        raise ServiceUnavailableError(f'no service port "{port}" found for service "{name}"')
    endpoints_info = lookup("", "v1", "endpoints")
    assert endpoints_info is not None
    try:
        endpoints = await ctx.registry(endpoints_info).get(target.namespace, name)
    except NotFoundError:
        endpoints = {}
    candidates: list[tuple[str, int]] = []
    for subset in endpoints.get("subsets") or []:
        subset_ports = subset.get("ports") or []
        match = next((p for p in subset_ports if (p.get("name") or "") == (chosen.get("name") or "")), None)
        if match is None and len(subset_ports) == 1:
            match = subset_ports[0]
        if match is None:
            continue
        candidates += [(str(a["ip"]), int(match["port"])) for a in subset.get("addresses") or [] if a.get("ip")]
    if not candidates:
        raise ServiceUnavailableError(f'no endpoints available for service "{name}"')
    return random.choice(candidates)


async def _node_url(ctx: ApiContext, name: str, scheme: str, port: str) -> tuple[str, bool]:
    """(base URL, whether to present the kubelet-client certificate)."""
    nodes = lookup("", "v1", "nodes")
    assert nodes is not None
    node = await ctx.registry(nodes).get(None, name)  # a missing node is a 404 NotFound, as upstream
    if not port:
        return await kubelet_base(ctx, name), True
    addresses = (node.get("status") or {}).get("addresses") or []
    address = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    if not address:
        raise ServiceUnavailableError(f'node "{name}" reports no InternalIP address')
    checked = check_destination(str(address), ctx.settings.dial_networks, what=f"node {name}")
    host = f"[{checked}]" if checked.version == 6 else str(checked)
    return f"{scheme or 'http'}://{host}:{_port_number(port, f'node {name}')}", False


async def handle_proxy(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    """Relay the request to the pod, service endpoint or node it names (see the module docstring)."""
    assert target.name is not None
    scheme, name, port = split_proxy_name(target.name)
    plural = target.resource.plural
    client_cert = False
    if plural == "nodes":
        base, client_cert = await _node_url(ctx, name, scheme, port)
    else:
        host, number = await (_pod_target if plural == "pods" else _service_target)(ctx, target, name, port)
        checked = check_destination(host, ctx.settings.dial_networks, what=f"{plural[:-1]} {name}")
        base = f"{scheme or 'http'}://{f'[{checked}]' if checked.version == 6 else checked}:{number}"
    url = base + _proxied_path(request)
    ssl_context: Any = False  # pods and services: Kubernetes does not verify their certificates either
    if client_cert:
        ssl_context = await asyncio.to_thread(kubelet_client_ssl_context, ctx.settings.pki_dir)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
    body = await request.read() if request.can_read_body else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=300)
    connector = guarded_connector(ctx.settings.dial_networks, ssl=ssl_context)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False) as session:
        try:
            upstream = await session.request(request.method, url, params=request.query, headers=headers,
                                             data=body, allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise ServiceUnavailableError(f"error trying to reach {plural[:-1]} {name}: {err}") from err
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response


def proxy_verb(method: str) -> str:
    """The authorization verb of a proxied request (Kubernetes maps the HTTP method)."""
    return _VERBS.get(method, method.lower())
