"""The kubelet's HTTPS server: container logs, exec, attach and port-forward, for the apiserver only.

A Docker kubelet calls :func:`start_kubelet_server` (with a context from
:func:`kubelet_server_tls`) and advertises the bound port in the Node's
``status.daemonEndpoints.kubeletEndpoint.Port``. A hollow kubelet process serves all its nodes
from one application (:func:`make_nodes_app`) with one listening site per node address
(:func:`start_kubelet_sites`); each request is answered for the node whose address it came in
on. The apiserver's ``pods/log``, ``exec``, ``attach`` and ``portforward`` (``apiserver.proxy``)
and ``nodes/{name}/proxy`` are its only clients.

Endpoints (the paths and query parameters of Kubernetes' kubelet):

* ``GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&timestamps&previous&sinceSeconds&limitBytes``
  -- ``text/plain``, chunked; with ``follow`` the body ends when the container's output ends.
* ``GET /exec/{namespace}/{pod}/{container}?command=...&stdin&stdout&stderr&tty`` -- a WebSocket
  speaking ``v5.channel.k8s.io`` (or ``v4``): binary messages whose first byte is the channel
  (0 stdin, 1 stdout, 2 stderr, 3 the final Status JSON, 4 resize ``{"Width","Height"}``); v5's
  ``0xFF 0x00`` closes stdin. A source that cannot exec at all (hollow pods) answers a channel-3
  ``BadRequest`` Status.
  Text messages are accepted too (the Python client sends ``str`` stdin so: the first
  character is the channel).
* ``GET /attach/{namespace}/{pod}/{container}?stdin&stdout&stderr&tty`` -- the container's main
  process over the same protocol (``kubelet.attach``); a container that does not run is a 404
  before the upgrade.
* ``GET /portForward/{namespace}/{pod}?ports=80,8080`` -- Kubernetes' WebSocket port-forward
  (``kubelet.portforward``).
* On hollow nodes (``refusal`` given) attach and portForward are a 400 ``BadRequest`` Status
  saying why: their pods run no processes.
* ``GET /stats/summary`` -- the node's Summary API document (``kubelet.stats``), when the app
  was given ``stats``; the apiserver's metrics scraper reads it.

Guarantees: TLS with client certificates from the cluster CA is required, and only the
apiserver's identity (CN ``kube-apiserver-kubelet-client``, O ``system:masters``) is served
(others get 403). Unknown pods, pods of other nodes and unknown containers answer 404 before
anything is streamed. Exec always ends with a channel-3 Status, then a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from kubelet.portforward import PORTFORWARD_PROTOCOLS, parse_ports, serve_port_forward
from kubelet.runtime.interface import ContainerNotFoundError, RuntimeError_
from kubelet.stats import StatsProvider
from kubelet.streams import STDERR, STDOUT, ExecSession, LogOptions, StreamSource, UnsupportedStreamError
from machinery.pki import ClusterPki, write_private_file

__all__ = [
    "APISERVER_CLIENT_GROUP",
    "APISERVER_CLIENT_USER",
    "EXEC_PROTOCOLS",
    "NodeRoute",
    "PodLookup",
    "exec_status",
    "kubelet_server_tls",
    "make_kubelet_app",
    "make_nodes_app",
    "start_kubelet_server",
    "start_kubelet_sites",
]

log = logging.getLogger(__name__)

APISERVER_CLIENT_USER = "kube-apiserver-kubelet-client"
"""The CN of the apiserver's kubelet-client certificate (``apiserver.proxy`` issues it)."""
APISERVER_CLIENT_GROUP = "system:masters"

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
"""Remote-command subprotocols served, preferred first."""

PodLookup = Callable[[str, str], Mapping[str, Any] | None]
"""``(namespace, name) -> pod object`` as this kubelet knows it, or None."""

NodeRoute = Callable[[str], tuple[str, StreamSource] | None]
"""The local address a request came in on → (node name, its stream source), or None."""

Refusal = Callable[[str], str]
"""Node name → why attach and port-forward are not served there."""

StatsRoute = Callable[[str], StatsProvider | None]
"""Node name → the provider of its ``/stats/summary``, or None."""

_STDIN, _ERROR, _RESIZE, _CLOSE = 0, 3, 4, 0xFF
_MAX_QUERY_INT = 2**63 - 1


def kubelet_server_tls(pki: ClusterPki, *, hosts: Sequence[str], cert_dir: Path) -> ssl.SSLContext:
    """A server context with a fresh serving certificate for ``hosts`` (written to ``cert_dir``,
    key 0600) that requires client certificates signed by the cluster CA."""
    cert_pem, key_pem = pki.issue_serving_certificate(list(hosts))
    cert_path, key_path = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    write_private_file(key_path, key_pem)
    write_private_file(cert_path, cert_pem, mode=0o644)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    context.load_cert_chain(str(cert_path), str(key_path))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def exec_status(exit_code: int) -> dict[str, Any]:
    """The channel-3 Status for a finished command (kubectl exits with ``exit_code``)."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command, exit status "
                       f"{exit_code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}


def _error_status(message: str, *, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


def _peer_identity(request: web.Request) -> tuple[str, list[str]] | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, groups


@web.middleware
async def _authorize(request: web.Request,
                     handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    if request.path == "/healthz":
        response: web.StreamResponse = await handler(request)
        return response
    identity = _peer_identity(request)
    if identity is None:
        raise web.HTTPUnauthorized(text="Unauthorized")
    user, groups = identity
    if user != APISERVER_CLIENT_USER or APISERVER_CLIENT_GROUP not in groups:
        raise web.HTTPForbidden(text=f"Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)")
    response = await handler(request)
    return response


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _int_param(request: web.Request, name: str, *, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: invalid value {raw!r}: must be an integer") from None
    if not minimum <= value <= _MAX_QUERY_INT:
        raise web.HTTPBadRequest(text=f"{name}: invalid value {value}: must be at least {minimum}")
    return value


class _KubeletHandlers:
    """Request handlers: each request is served for the node its local address belongs to."""

    def __init__(self, route: NodeRoute, pod_lookup: PodLookup | None, refusal: Refusal) -> None:
        self.route = route
        self.pod_lookup = pod_lookup
        self.refusal = refusal

    def _node(self, request: web.Request) -> tuple[str, StreamSource]:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        found = self.route(str(sockname[0]) if sockname else "")
        if found is None:
            raise web.HTTPNotFound(text=f"no node is served at {sockname}")
        return found

    def _check_pod(self, node: str, namespace: str, pod: str, container: str | None) -> None:
        if self.pod_lookup is None:
            return
        obj = self.pod_lookup(namespace, pod)
        spec = (obj or {}).get("spec") or {}
        if obj is None or spec.get("nodeName", node) != node:
            raise web.HTTPNotFound(text=f'pod "{namespace}/{pod}" not found on node {node}')
        names = [c.get("name") for key in ("initContainers", "containers", "ephemeralContainers")
                 for c in spec.get(key) or []]
        if container is not None and container not in names:
            raise web.HTTPNotFound(text=f'container "{container}" not found in pod "{namespace}/{pod}"')

    def _target(self, request: web.Request) -> tuple[StreamSource, str, str, str]:
        node, source = self._node(request)
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        self._check_pod(node, namespace, pod, container)
        return source, namespace, pod, container

    async def refuse(self, request: web.Request) -> web.StreamResponse:
        """attach and portForward: a 400 Status saying why this kubelet does not serve them."""
        node, _source = self._node(request)
        namespace, pod = request.match_info["namespace"], request.match_info["pod"]
        self._check_pod(node, namespace, pod, request.match_info.get("container"))
        what = "port-forward" if request.path.startswith("/portForward/") else "attach"
        message = f"cannot {what} pod {namespace}/{pod}: {self.refusal(node)}"
        return web.json_response(_error_status(message, reason="BadRequest", code=400), status=400)

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        source, namespace, pod, container = self._target(request)
        options = LogOptions(follow=_flag(request, "follow"),
                             tail_lines=_int_param(request, "tailLines", minimum=0),
                             timestamps=_flag(request, "timestamps"), previous=_flag(request, "previous"),
                             since_seconds=_int_param(request, "sinceSeconds", minimum=1))
        limit = _int_param(request, "limitBytes", minimum=1)
        try:
            chunks = await source.logs(namespace, pod, container, options)
        except ContainerNotFoundError as err:
            raise web.HTTPNotFound(text=str(err)) from err
        except RuntimeError_ as err:
            raise web.HTTPInternalServerError(text=str(err)) from err
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in chunks:
                if limit is not None:
                    chunk = chunk[: limit - sent]
                await response.write(chunk)
                sent += len(chunk)
                if limit is not None and sent >= limit:
                    break
        except (ConnectionError, RuntimeError_) as err:
            log.info("log stream of %s/%s/%s ended: %s", namespace, pod, container, err)
            return response
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def exec(self, request: web.Request) -> web.StreamResponse:
        source, namespace, pod, container = self._target(request)
        command = request.query.getall("command", [])
        if not command:
            raise web.HTTPBadRequest(text="you must specify at least one command for the container")
        tty, want_stdin = _flag(request, "tty"), _flag(request, "stdin")
        want_stdout, want_stderr = _flag(request, "stdout"), _flag(request, "stderr") and not tty
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)")
        await ws.prepare(request)
        try:
            session = await source.exec(namespace, pod, container, command, stdin=want_stdin, tty=tty)
        except ContainerNotFoundError as err:
            await _finish(ws, _error_status(str(err), reason="NotFound", code=404))
            return ws
        except UnsupportedStreamError as err:
            await _finish(ws, _error_status(str(err), reason="BadRequest", code=400))
            return ws
        except RuntimeError_ as err:
            await _finish(ws, _error_status(str(err)))
            return ws
        log.info("exec in %s/%s/%s: %s", namespace, pod, container, command)
        await _run_exec(ws, session, stdout=want_stdout, stderr=want_stderr)
        return ws

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """The container's main process over the exec protocol; refused before the upgrade when the
        container does not run (kubectl then shows the logs, as on Kubernetes)."""
        source, namespace, pod, container = self._target(request)
        tty, want_stdin = _flag(request, "tty"), _flag(request, "stdin")
        want_stdout, want_stderr = _flag(request, "stdout"), _flag(request, "stderr") and not tty
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="attach needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)")
        try:
            session = await source.attach(namespace, pod, container, stdin=want_stdin, tty=tty)
        except ContainerNotFoundError as err:
            raise web.HTTPNotFound(text=str(err)) from err
        except UnsupportedStreamError as err:
            raise web.HTTPBadRequest(text=str(err)) from err
        except RuntimeError_ as err:
            raise web.HTTPInternalServerError(text=str(err)) from err
        try:
            await ws.prepare(request)
        except BaseException:
            await session.close()
            raise
        log.info("attach to %s/%s/%s", namespace, pod, container)
        await _run_exec(ws, session, stdout=want_stdout, stderr=want_stderr)
        return ws

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        """``kubelet.portforward``'s WebSocket protocol to the pod's ports."""
        node, source = self._node(request)
        namespace, pod = request.match_info["namespace"], request.match_info["pod"]
        self._check_pod(node, namespace, pod, None)
        try:
            ports = parse_ports(request.query.getall("ports", []) or request.query.getall("port", []))
        except ValueError as err:
            raise web.HTTPBadRequest(text=str(err)) from err
        ws = web.WebSocketResponse(protocols=PORTFORWARD_PROTOCOLS, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="Upgrade request required: port-forward is served over WebSocket "
                                          f"({', '.join(PORTFORWARD_PROTOCOLS)})")
        obj = self.pod_lookup(namespace, pod) if self.pod_lookup is not None else None
        uid = str(((obj or {}).get("metadata") or {}).get("uid") or "")
        await ws.prepare(request)
        log.info("port-forward to %s/%s ports %s", namespace, pod, ports)
        await serve_port_forward(ws, source, namespace=namespace, pod=pod, uid=uid, ports=ports)
        return ws


async def _finish(ws: web.WebSocketResponse, status: Mapping[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes([_ERROR]) + orjson.dumps(status))
    await ws.close()


async def _pump_input(ws: web.WebSocketResponse, session: ExecSession) -> None:
    """Client -> process: stdin data, v5 stdin close, terminal resizes; ends when the client closes."""
    async for msg in ws:
        # The Python client sends str stdin as text frames: the channel is the first character.
        data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data if msg.type == WSMsgType.BINARY else b""
        if not data:
            continue
        channel, payload = data[0], data[1:]
        if channel == _STDIN:
            await session.write_stdin(payload)
        elif channel == _RESIZE:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                size = orjson.loads(payload)
                await session.resize(int(size["Width"]), int(size["Height"]))
        elif channel == _CLOSE and payload[:1] == bytes([_STDIN]):
            await session.close_stdin()


async def _pump_output(ws: web.WebSocketResponse, session: ExecSession, *, stdout: bool, stderr: bool) -> None:
    async for channel, data in session.output():
        if (channel == STDOUT and stdout) or (channel == STDERR and stderr):
            await ws.send_bytes(bytes([channel]) + data)


async def _run_exec(ws: web.WebSocketResponse, session: ExecSession, *, stdout: bool, stderr: bool) -> None:
    """Relay until the process' output ends (then send its Status) or the client goes away."""
    inbound = asyncio.create_task(_pump_input(ws, session), name="exec-stdin")
    outbound = asyncio.create_task(_pump_output(ws, session, stdout=stdout, stderr=stderr), name="exec-output")
    try:
        await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
        if outbound.done() and outbound.exception() is None:
            code = await session.wait()
            await _finish(ws, exec_status(code))
        elif outbound.done():
            await _finish(ws, _error_status(f"exec output failed: {outbound.exception()}"))
    except (ConnectionError, RuntimeError) as err:
        log.info("exec stream ended: %s", err)
    finally:
        for task in (inbound, outbound):
            task.cancel()
        await asyncio.gather(inbound, outbound, return_exceptions=True)
        await session.close()
        if not ws.closed:
            await ws.close()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_nodes_app(route: NodeRoute, *, pod_lookup: PodLookup | None,
                   refusal: Refusal | None = None, stats: StatsRoute | None = None) -> web.Application:
    """The application for the nodes ``route`` knows (no listener): one app for many sites.
    With ``refusal`` (hollow nodes), attach and port-forward are refused with its reason; with
    ``stats``, ``/stats/summary`` is served."""
    handlers = _KubeletHandlers(route, pod_lookup, refusal or (lambda node: ""))
    app = web.Application(middlewares=[_authorize])
    app.router.add_get("/healthz", _healthz)
    if stats is not None:
        app.router.add_get("/stats/summary", _stats_handler(handlers, stats))
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", handlers.container_logs)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/exec/{namespace}/{pod}/{container}", handlers.exec)
        app.router.add_route(method, "/attach/{namespace}/{pod}/{container}",
                             handlers.refuse if refusal else handlers.attach)
        app.router.add_route(method, "/portForward/{namespace}/{pod}",
                             handlers.refuse if refusal else handlers.port_forward)
    return app


def _stats_handler(handlers: _KubeletHandlers, stats: StatsRoute) -> Callable[[web.Request], Any]:
    async def summary(request: web.Request) -> web.Response:
        node, _source = handlers._node(request)
        provider = stats(node)
        if provider is None:
            raise web.HTTPNotFound(text=f"no statistics are kept for node {node}")
        return web.Response(body=orjson.dumps(await provider.summary()), content_type="application/json")

    return summary


def make_kubelet_app(source: StreamSource, *, node_name: str, pod_lookup: PodLookup | None,
                     stats: StatsProvider | None = None) -> web.Application:
    """The application of one node (no listener): for embedding and tests."""
    return make_nodes_app(lambda _address: (node_name, source), pod_lookup=pod_lookup,
                          stats=(lambda _node: stats) if stats is not None else None)


async def start_kubelet_sites(app: web.Application, *, hosts: Sequence[str], tls: ssl.SSLContext,
                              port: int = 0) -> tuple[web.AppRunner, dict[str, int]]:
    """Serve ``app`` on each of ``hosts`` (one runner, one site per address; ``port`` 0 picks a
    free port per site); returns the runner (``await runner.cleanup()`` stops every site) and
    the bound port of each host."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    ports: dict[str, int] = {}
    try:
        for host in hosts:
            site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
            await site.start()
            server = site._server  # aiohttp exposes the bound sockets only here
            sockets = getattr(server, "sockets", None) or []
            ports[host] = int(sockets[0].getsockname()[1]) if sockets else port
    except BaseException:
        await runner.cleanup()
        raise
    return runner, ports


async def start_kubelet_server(runtime: StreamSource, *, node_name: str, host: str, port: int,
                               tls: ssl.SSLContext, pod_lookup: PodLookup | None,
                               stats: StatsProvider | None = None) -> tuple[web.AppRunner, int]:
    """Listen on ``host:port`` (0 picks a port) with ``tls``; returns the runner (``await
    runner.cleanup()`` stops it) and the bound port."""
    app = make_kubelet_app(runtime, node_name=node_name, pod_lookup=pod_lookup, stats=stats)
    runner, ports = await start_kubelet_sites(app, hosts=[host], tls=tls, port=port)
    log.info("kubelet %s serving logs and exec on https://%s:%d", node_name, host, ports[host])
    return runner, ports[host]
