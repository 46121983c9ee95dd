"""``pods/log``, ``exec``, ``attach`` and ``portforward``: the apiserver relays them to the pod's kubelet.

Called by ``apiserver.subresources.handle`` after authentication. The pod is looked up (404 if
missing), the container chosen (Kubernetes' 400 when several exist and none is named), and the
pod's node found; its kubelet is reached at the node's ``InternalIP`` address and
``status.daemonEndpoints.kubeletEndpoint.Port`` (the port the kubelet reported: hollow nodes
listen on ephemeral ports of their loopback addresses) over TLS, presenting the apiserver's
kubelet-client certificate (CN ``kube-apiserver-kubelet-client``, O ``system:masters``), issued
from the cluster CA into the PKI dir by :func:`ensure_kubelet_client_certificate` (idempotent;
the server may call it at start, the first proxied request does otherwise).

What each client speaks, and what the kubelet is asked (it speaks WebSocket only):

* exec and attach over WebSocket (``v5``/``v4.channel.k8s.io``, kubectl 1.30+, the Python
  client): frames relayed both ways, text frames included;
* exec and attach over SPDY/3.1 (kubectl <= 1.29, ``kubectl cp``, the fallback of later ones):
  translated to a ``v5.channel.k8s.io`` kubelet WebSocket (``apiserver.spdy_streams``);
* port-forward over WebSocket channels (the Python client): relayed to the kubelet's
  port-forward WebSocket with the same ``ports``;
* port-forward over SPDY/3.1, plain (kubectl <= 1.30) or tunnelled in a WebSocket
  (``SPDY/3.1+portforward.k8s.io``, kubectl 1.31+): one kubelet WebSocket per connection.

A request that is no upgrade gets the kubelet's refusal (hollow pods run no processes) or
Kubernetes' ``Upgrade request required``.

Guarantees: the kubelet's address passes ``machinery.netguard`` first (loopback, the service
CIDR and ``--allowed-networks`` only; anything else is a 503 Status naming the address, and is
never dialled), and the connection is made by the guard's connector. Every failure before the
stream starts is an ``ApiError`` (a Status for the client): the kubelet is dialled before the
client's upgrade is answered. Logs are streamed through chunk by chunk and end when the
kubelet's body ends; relays end when either side closes, and then close the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import WSMsgType, web
from cryptography import x509

from apiserver.context import ApiContext
from apiserver.routing import RequestTarget
from apiserver.spdy_streams import (
    PORTFORWARD_PROTOCOL,
    REMOTECOMMAND_PROTOCOLS,
    TUNNEL_PROTOCOL,
    KubeletDial,
    accept_spdy_upgrade,
    offered_versions,
    serve_remote_command,
    websocket_connection,
)
from apiserver.spdy_streams import serve_port_forward as serve_spdy_port_forward
from machinery.errors import ApiError, BadRequestError, NotFoundError, ServiceUnavailableError, error_from_status
from machinery.netguard import check_destination, guarded_connector
from machinery.pki import ClusterPki, identity_from_certificate, write_private_file
from machinery.resources import lookup

__all__ = [
    "EXEC_PROTOCOLS",
    "KUBELET_CLIENT_GROUP",
    "KUBELET_CLIENT_USER",
    "ensure_kubelet_client_certificate",
    "kubelet_base",
    "kubelet_client_ssl_context",
    "pod_attach",
    "pod_exec",
    "pod_log",
    "pod_portforward",
]

log = logging.getLogger(__name__)

KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUP = "system:masters"
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
"""Remote-command subprotocols relayed, preferred first (kubectl 1.30+ offers only v5)."""
PORTFORWARD_WS_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io", "v5.channel.k8s.io")
"""WebSocket port-forward subprotocols accepted from clients (the Python client offers v5, v4);
the kubelet is always asked for the first."""

_LOG_PARAMS = ("follow", "tailLines", "timestamps", "previous", "sinceSeconds", "limitBytes")
_EXEC_PARAMS = ("stdin", "stdout", "stderr", "tty")
_CONNECT_TIMEOUT = 10.0
_HANDSHAKE_REFUSALS = {404: "the pod or container is not there, or the container is not running",
                       400: "bad request"}


def ensure_kubelet_client_certificate(pki_dir: Path) -> tuple[Path, Path]:
    """The apiserver's kubelet-client certificate and key in ``pki_dir``, issued if missing or stale."""
    pki = ClusterPki.at(pki_dir)
    cert_path, key_path = pki_dir / "apiserver-kubelet-client.crt", pki_dir / "apiserver-kubelet-client.key"
    with open(pki_dir / ".kubelet-client.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not _usable(pki, cert_path, key_path):
            cert_pem, key_pem = pki.issue_client_certificate(KUBELET_CLIENT_USER, [KUBELET_CLIENT_GROUP])
            write_private_file(key_path, key_pem)
            write_private_file(cert_path, cert_pem, mode=0o644)
    return cert_path, key_path


def _usable(pki: ClusterPki, cert_path: Path, key_path: Path) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(pki.ca_certificate())
    except Exception:  # unreadable, or signed by an older CA: reissue
        return False
    return identity_from_certificate(cert) == (KUBELET_CLIENT_USER, [KUBELET_CLIENT_GROUP])


def kubelet_client_ssl_context(pki_dir: Path) -> ssl.SSLContext:
    """TLS to kubelets: verify their serving certificates by the cluster CA, present ours."""
    cert_path, key_path = ensure_kubelet_client_certificate(pki_dir)
    context = ssl.create_default_context(cafile=str(ClusterPki.at(pki_dir).ca_cert))
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


async def _pod_and_container(ctx: ApiContext, target: RequestTarget,
                             request: web.Request) -> tuple[str, str, str, str]:
    """(namespace, pod, container, node) after Kubernetes' checks."""
    assert target.name is not None and target.namespace is not None
    pod = await ctx.registry(target.resource).get(target.namespace, target.name)
    spec = pod.get("spec") or {}
    names = [c.get("name", "") for c in spec.get("containers") or []]
    init_names = [c.get("name", "") for c in spec.get("initContainers") or []]
    container = request.query.get("container", "")
    if not container:
        if len(names) != 1:
            message = f"a container name must be specified for pod {target.name}, choose one of: [{' '.join(names)}]"
            if init_names:
                message += f" or one of the init containers: [{' '.join(init_names)}]"
            raise BadRequestError(message)
        container = names[0]
    elif container not in names and container not in init_names and container not in [
            c.get("name", "") for c in spec.get("ephemeralContainers") or []]:
        raise BadRequestError(f"container {container} is not valid for pod {target.name}")
    if not spec.get("nodeName"):
        raise BadRequestError(f"pod {target.name} does not have a host assigned")
    return target.namespace, target.name, container, str(spec["nodeName"])


async def kubelet_base(ctx: ApiContext, node_name: str) -> str:
    """``https://InternalIP:port`` of the node's kubelet, after the network guard's check."""
    nodes = lookup("", "v1", "nodes")
    assert nodes is not None
    try:
        node = await ctx.registry(nodes).get(None, node_name)
    except NotFoundError as err:
        raise BadRequestError(f'node "{node_name}" of the pod is not registered') from err
    status = node.get("status") or {}
    port = (((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")) or 0
    addresses = status.get("addresses") or []
    address = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    if not port or not address:
        raise BadRequestError(f'node "{node_name}" does not report a kubelet endpoint '
                              "(status.addresses InternalIP and daemonEndpoints.kubeletEndpoint.Port)")
    checked = check_destination(str(address), ctx.settings.dial_networks, what=f"the kubelet of node {node_name}")
    host = f"[{checked}]" if checked.version == 6 else str(checked)
    return f"https://{host}:{int(port)}"


def _kubelet_path(kind: str, namespace: str, pod: str, container: str) -> str:
    return f"/{kind}/{quote(namespace, safe='')}/{quote(pod, safe='')}/{quote(container, safe='')}"


def _kubelet_error(status: int, text: str, node: str) -> ApiError:
    message = text.strip() or f"the kubelet on node {node} answered {status}"
    if status == 404:
        return NotFoundError(message)
    if status == 400:
        return BadRequestError(message)
    return ApiError(f"error from the kubelet on node {node} ({status}): {message}")


async def pod_log(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    """``GET pods/{name}/log``: stream the container's log from its kubelet."""
    namespace, pod, container, node = await _pod_and_container(ctx, target, request)
    url = await kubelet_base(ctx, node) + _kubelet_path("containerLogs", namespace, pod, container)
    params = {k: request.query[k] for k in _LOG_PARAMS if k in request.query}
    ssl_context = await asyncio.to_thread(kubelet_client_ssl_context, ctx.settings.pki_dir)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    connector = guarded_connector(ctx.settings.dial_networks, ssl=ssl_context)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            upstream = await session.get(url, params=params)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise ServiceUnavailableError(f"cannot reach the kubelet on node {node}: {err}") from err
        async with upstream:
            if upstream.status != 200:
                raise _kubelet_error(upstream.status, await upstream.text(), node)
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, ConnectionError) as err:
                log.info("log stream %s/%s/%s ended: %s", namespace, pod, container, err)
                return response
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response


def _is_upgrade(request: web.Request, protocol: str) -> bool:
    return request.headers.get("Upgrade", "").lower() == protocol.lower()


async def _ask_kubelet(ctx: ApiContext, node: str, path: str, query: list[tuple[str, str]]) -> ApiError:
    """A request that is not an upgrade: the kubelet's refusal (hollow pods run no processes),
    else Kubernetes' 400 saying an upgrade is required."""
    return await _kubelet_refusal(ctx, node, path, query) or BadRequestError("Upgrade request required")


async def _kubelet_refusal(ctx: ApiContext, node: str, path: str, query: list[tuple[str, str]]) -> ApiError | None:
    """The kubelet's Status when it refuses ``path`` outright (a hollow node), else None: asked with
    a plain request before an upgrade is answered, so the client gets the reason, not a stream."""
    ssl_context = await asyncio.to_thread(kubelet_client_ssl_context, ctx.settings.pki_dir)
    timeout = aiohttp.ClientTimeout(total=_CONNECT_TIMEOUT * 3, sock_connect=_CONNECT_TIMEOUT)
    connector = guarded_connector(ctx.settings.dial_networks, ssl=ssl_context)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            async with session.get(await kubelet_base(ctx, node) + path, params=query) as upstream:
                body, code = await upstream.read(), upstream.status
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise ServiceUnavailableError(f"cannot reach the kubelet on node {node}: {err}") from err
    with contextlib.suppress(orjson.JSONDecodeError):
        status = orjson.loads(body)
        if code == 400 and isinstance(status, dict) and status.get("message"):
            return error_from_status(status, http_code=code)
    return None


@contextlib.asynccontextmanager
async def _kubelet_dialer(ctx: ApiContext, node: str, protocols: tuple[str, ...]) -> AsyncIterator[KubeletDial]:
    """Open WebSockets to ``node``'s kubelet (one client session for all of them)."""
    base = await kubelet_base(ctx, node)
    ssl_context = await asyncio.to_thread(kubelet_client_ssl_context, ctx.settings.pki_dir)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    connector = guarded_connector(ctx.settings.dial_networks, ssl=ssl_context)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def dial(path: str, query: list[tuple[str, str]]) -> aiohttp.ClientWebSocketResponse:
            try:
                return await session.ws_connect(base + path, params=query, protocols=protocols, max_msg_size=0,
                                                autoping=True)
            except aiohttp.WSServerHandshakeError as err:
                why = _HANDSHAKE_REFUSALS.get(err.status, "refused the stream")
                raise _kubelet_error(err.status, f"the kubelet on node {node} answered {err.status} to {path}: {why}",
                                     node) from err
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                raise ServiceUnavailableError(f"cannot reach the kubelet on node {node}: {err}") from err

        yield dial


async def pod_exec(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    """``pods/{name}/exec``: WebSocket (``v5``/``v4.channel.k8s.io``) or SPDY/3.1, relayed to the kubelet."""
    namespace, pod, container, node = await _pod_and_container(ctx, target, request)
    command = request.query.getall("command", [])
    if not command:
        raise BadRequestError("you must specify at least one command for the container")
    params: list[tuple[str, str]] = [("command", c) for c in command]
    return await _remote_command(request, ctx, node, _kubelet_path("exec", namespace, pod, container), params)


async def pod_attach(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    """``pods/{name}/attach``: the container's main process, over the same protocols as exec."""
    namespace, pod, container, node = await _pod_and_container(ctx, target, request)
    path = _kubelet_path("attach", namespace, pod, container)
    if refusal := await _kubelet_refusal(ctx, node, path, []):
        raise refusal
    return await _remote_command(request, ctx, node, path, [])


async def _remote_command(request: web.Request, ctx: ApiContext, node: str, path: str,
                          params: list[tuple[str, str]]) -> web.StreamResponse:
    params = params + [(k, request.query[k]) for k in _EXEC_PARAMS if k in request.query]
    if _is_upgrade(request, "websocket"):
        protocol = next((p for p in _offered_protocols(request) if p in EXEC_PROTOCOLS), None)
        if protocol is None:
            raise BadRequestError(f"a WebSocket stream needs one of the subprotocols {', '.join(EXEC_PROTOCOLS)}")
        async with _kubelet_dialer(ctx, node, (protocol,)) as dial:
            upstream = await dial(path, params)
            async with upstream:
                downstream = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0)
                await downstream.prepare(request)
                await _relay(downstream, upstream)
                return downstream
    if _is_upgrade(request, "SPDY/3.1"):
        offered = offered_versions(request)
        version = next((v for v in REMOTECOMMAND_PROTOCOLS if v in offered), None)
        if version is None:
            raise BadRequestError(f"unable to upgrade: none of the stream protocols {offered} is supported "
                                  f"(supported: {', '.join(REMOTECOMMAND_PROTOCOLS)})")
        async with _kubelet_dialer(ctx, node, ("v5.channel.k8s.io",)) as dial:
            upstream = await dial(path, params)
            connection = await accept_spdy_upgrade(request, version)
            flags = {k: request.query.get(k, "").lower() in ("true", "1") for k in _EXEC_PARAMS}
            await serve_remote_command(connection, upstream, stdin=flags["stdin"], stdout=flags["stdout"],
                                       stderr=flags["stderr"], tty=flags["tty"])
            return connection.response
    raise await _ask_kubelet(ctx, node, path, params)


async def pod_portforward(request: web.Request, ctx: ApiContext, target: RequestTarget) -> web.StreamResponse:
    """``pods/{name}/portforward`` as each client speaks it (see ``apiserver.spdy_streams``)."""
    assert target.name is not None and target.namespace is not None
    obj = await ctx.registry(target.resource).get(target.namespace, target.name)
    node = str((obj.get("spec") or {}).get("nodeName") or "")
    if not node:
        raise BadRequestError(f"pod {target.name} does not have a host assigned")
    path = f"/portForward/{quote(target.namespace, safe='')}/{quote(target.name, safe='')}"
    ports = [("ports", p) for p in request.query.getall("ports", [])]
    for item in (i.strip() for _, value in ports for i in value.split(",")):
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise BadRequestError(f"invalid port {item!r}: must be an integer from 1 to 65535")
    if (_is_upgrade(request, "websocket") or _is_upgrade(request, "SPDY/3.1")) and \
            (refusal := await _kubelet_refusal(ctx, node, path, ports)):
        raise refusal
    if _is_upgrade(request, "websocket"):
        offered = _offered_protocols(request)
        if TUNNEL_PROTOCOL in offered:  # kubectl 1.31+: SPDY inside the WebSocket
            async with _kubelet_dialer(ctx, node, PORTFORWARD_WS_PROTOCOLS[:1]) as dial:
                ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), max_msg_size=0)
                await ws.prepare(request)
                await serve_spdy_port_forward(websocket_connection(ws), dial, path=path)
                return ws
        if not ports:
            raise BadRequestError("at least one port must be given (query parameter ports)")
        protocol = next((p for p in offered if p in PORTFORWARD_WS_PROTOCOLS), None)
        async with _kubelet_dialer(ctx, node, PORTFORWARD_WS_PROTOCOLS[:1]) as dial:
            upstream = await dial(path, ports)
            async with upstream:
                downstream = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=0)
                await downstream.prepare(request)
                await _relay(downstream, upstream)
                return downstream
    if _is_upgrade(request, "SPDY/3.1"):
        if PORTFORWARD_PROTOCOL not in offered_versions(request):
            raise BadRequestError(f"unable to upgrade: port-forward needs the stream protocol {PORTFORWARD_PROTOCOL}")
        async with _kubelet_dialer(ctx, node, PORTFORWARD_WS_PROTOCOLS[:1]) as dial:
            connection = await accept_spdy_upgrade(request, PORTFORWARD_PROTOCOL)
            await serve_spdy_port_forward(connection, dial, path=path)
            return connection.response
    raise await _ask_kubelet(ctx, node, path, ports)


def _offered_protocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


async def _relay(client: web.WebSocketResponse, kubelet: aiohttp.ClientWebSocketResponse) -> None:
    """Binary frames both ways until either side closes; then close the other."""

    async def to_kubelet() -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                await kubelet.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await kubelet.send_str(msg.data)

    async def to_client() -> None:
        async for msg in kubelet:
            if msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)

    tasks = [asyncio.create_task(to_kubelet(), name="exec-relay-in"),
             asyncio.create_task(to_client(), name="exec-relay-out")]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionError | aiohttp.ClientError):
                log.warning("exec relay failed: %r", result)
        with contextlib.suppress(Exception):
            await kubelet.close()
        with contextlib.suppress(Exception):
            await client.close()

