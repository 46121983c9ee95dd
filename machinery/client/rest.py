"""The async Kubernetes REST client every component uses to talk to the apiserver.

:class:`ApiClient` speaks HTTPS (aiohttp, the kubeconfig's CA and client certificate or bearer
token) and JSON (orjson) to Kubernetes-shaped paths (``/api/v1/...``, ``/apis/{g}/{v}/...``).
Callers: informers (list + watch), controllers, the scheduler (``bind``), the kubelet, leader
election and the event recorder.

Guarantees:
- every request has a timeout; a watch is bounded by its ``timeoutSeconds``;
- a non-2xx answer raises the :mod:`machinery.errors` class its ``Status`` names; connection
  failures and client timeouts raise :class:`~machinery.errors.ServiceUnavailableError`;
  aiohttp exceptions never escape;
- :meth:`ApiClient.watch` yields :class:`WatchEvent` until the server closes the stream; an
  ``ERROR`` event raises (410 → :class:`~machinery.errors.GoneError`);
- ``qps``/``burst`` > 0 throttle requests (not watches) through a token bucket.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from machinery.client.ratelimit import TokenBucket
from machinery.errors import ApiError, GoneError, ServiceUnavailableError, error_from_status
from machinery.kubeconfig import load_kubeconfig
from machinery.resources import ResourceInfo

__all__ = ["PATCH_CONTENT_TYPES", "ApiClient", "WatchEvent", "resource_path"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

_CONNECTION_LIMIT = 256


@dataclass(frozen=True)
class WatchEvent:
    """One line of a watch stream."""

    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    object: dict[str, Any]


def resource_path(resource: ResourceInfo, *, namespace: str | None = None, name: str = "",
                  subresource: str = "") -> str:
    """``/api/v1/namespaces/{ns}/pods/{name}/{sub}`` and friends (namespace ignored for cluster scope)."""
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    if resource.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{resource.plural}"
    if name:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def _error_from_body(status: int, body: bytes) -> ApiError:
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        return error_from_status(decoded, http_code=status)
    message = body.decode(errors="replace").strip() or f"the server answered {status}"
    return error_from_status({"code": status, "message": message}, http_code=status)


class ApiClient:
    """Async Kubernetes REST client (aiohttp, HTTPS with the kubeconfig's client certificate)."""

    def __init__(self, server: str, *, ssl_context: ssl.SSLContext | None = None, token: str | None = None,
                 tls_server_name: str | None = None, user_agent: str = "kubelab", qps: float = 0.0,
                 burst: int = 0, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._ssl = ssl_context
        self._tls_server_name = tls_server_name
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._bucket = TokenBucket(qps=qps, burst=burst or max(int(qps), 1))
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path, *, user_agent: str = "kubelab", qps: float = 0.0, burst: int = 0,
                        timeout: float = 30.0) -> ApiClient:
        """A client for the current context of the kubeconfig at ``path``."""
        entry = load_kubeconfig(path)
        return cls(entry.server, ssl_context=entry.ssl_context() if entry.server.startswith("https") else None,
                   token=entry.token, tls_server_name=entry.tls_server_name, user_agent=user_agent, qps=qps,
                   burst=burst, timeout=timeout)

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: aiohttp sessions belong to the running loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True,
                                             limit=_CONNECTION_LIMIT)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- raw requests ---------------------------------------------------------------------------

    def _request_kwargs(self) -> dict[str, Any]:
        return {"server_hostname": self._tls_server_name} if self._tls_server_name else {}

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        """Send one request; returns the decoded JSON answer (text when it is not JSON)."""
        await self._bucket.wait()
        headers: dict[str, str] = {}
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        try:
            async with self._get_session().request(
                method, self.server + path, data=data, params=params, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout), **self._request_kwargs(),
            ) as resp:
                raw = await resp.read()
                status = resp.status
                resp_type = resp.content_type
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServiceUnavailableError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= status < 300:
            raise _error_from_body(status, raw)
        if not raw:
            return None
        if resp_type == "application/json" or raw[:1] in (b"{", b"["):
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        return raw.decode(errors="replace")

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = await self.request(method, path, **kwargs)
        if not isinstance(answer, dict):
            raise ApiError(f"{method} {path}: expected a JSON object, got {type(answer).__name__}")
        return answer

    # -- verbs ------------------------------------------------------------------------------------

    async def get(self, resource: ResourceInfo, name: str, *, namespace: str | None = None,
                  subresource: str = "") -> dict[str, Any]:
        return await self._json("GET", resource_path(resource, namespace=namespace, name=name,
                                                     subresource=subresource))

    async def list(self, resource: ResourceInfo, *, namespace: str | None = None, label_selector: str = "",
                   field_selector: str = "", resource_version: str = "", limit: int = 0,
                   continue_token: str = "") -> dict[str, Any]:
        """The ``XList`` dict (``items``, ``metadata.resourceVersion``, ``metadata.continue``)."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version:
            params["resourceVersion"] = resource_version
        if limit:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        return await self._json("GET", resource_path(resource, namespace=namespace), params=params)

    async def create(self, resource: ResourceInfo, obj: dict[str, Any], *, namespace: str | None = None,
                     field_manager: str = "") -> dict[str, Any]:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        params = {"fieldManager": field_manager} if field_manager else None
        return await self._json("POST", resource_path(resource, namespace=ns), body=obj, params=params)

    async def update(self, resource: ResourceInfo, obj: dict[str, Any], *, subresource: str = "") -> dict[str, Any]:
        """PUT the object (its ``metadata.resourceVersion``, when set, is the compare-and-swap guard)."""
        meta = obj.get("metadata") or {}
        path = resource_path(resource, namespace=meta.get("namespace"), name=str(meta.get("name", "")),
                             subresource=subresource)
        return await self._json("PUT", path, body=obj)

    async def patch(self, resource: ResourceInfo, name: str, patch: Any, *, namespace: str | None = None,
                    patch_type: str = "merge", subresource: str = "", field_manager: str = "",
                    force: bool = False) -> dict[str, Any]:
        """``patch_type``: ``merge`` | ``strategic`` | ``json`` | ``apply`` (server-side apply)."""
        try:
            content_type = PATCH_CONTENT_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"unknown patch type {patch_type!r}") from None
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        path = resource_path(resource, namespace=namespace, name=name, subresource=subresource)
        return await self._json("PATCH", path, body=patch, params=params, content_type=content_type)

    async def delete(self, resource: ResourceInfo, name: str, *, namespace: str | None = None,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        """Delete; answers the deleted object (or the object marked for deletion, or a Status)."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        return await self._json("DELETE", resource_path(resource, namespace=namespace, name=name), body=options)

    async def bind(self, namespace: str, pod_name: str, node_name: str) -> None:
        """POST ``pods/{name}/binding`` (what the scheduler does)."""
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": pod_name, "namespace": namespace},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod_name}/binding", body=binding)

    async def evict(self, namespace: str, pod_name: str) -> None:
        """POST ``pods/{name}/eviction`` (policy/v1 Eviction)."""
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": pod_name, "namespace": namespace}}
        await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod_name}/eviction", body=eviction)

    # -- watch ------------------------------------------------------------------------------------

    async def watch(self, resource: ResourceInfo, *, namespace: str | None = None, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncGenerator[WatchEvent, None]:
        """Stream events until the server closes the stream (``timeoutSeconds``) or fails.

        Raises :class:`GoneError` for an ERROR event with code 410 (the caller must re-list), the
        matching error class for other ERROR events and non-2xx answers, and
        :class:`ServiceUnavailableError` when the connection breaks.
        """
        params: dict[str, str] = {"watch": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        path = resource_path(resource, namespace=namespace)
        total = timeout_seconds + self.timeout if timeout_seconds is not None else None
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=self.timeout)
        try:
            async with self._get_session().get(self.server + path, params=params, timeout=timeout,
                                               **self._request_kwargs()) as resp:
                if not 200 <= resp.status < 300:
                    raise _error_from_body(resp.status, await resp.read())
                buffer = b""
                # iter_any + split: a line (one object) may be larger than StreamReader's line limit.
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while True:
                        newline = buffer.find(b"\n")
                        if newline < 0:
                            break
                        line, buffer = buffer[:newline], buffer[newline + 1:]
                        if line.strip():
                            yield _decode_event(line, path)
                if buffer.strip():
                    yield _decode_event(buffer, path)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServiceUnavailableError(f"watch {path}: {type(exc).__name__}: {exc}") from exc


def _decode_event(line: bytes, path: str) -> WatchEvent:
    try:
        decoded = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ServiceUnavailableError(f"watch {path}: undecodable event: {exc}") from exc
    event_type = str(decoded.get("type", "")) if isinstance(decoded, dict) else ""
    obj = decoded.get("object") if isinstance(decoded, dict) else None
    if not isinstance(obj, dict):
        raise ServiceUnavailableError(f"watch {path}: malformed event")
    if event_type == "ERROR":
        err = error_from_status(obj)
        if obj.get("code") == 410 and not isinstance(err, GoneError):
            err = GoneError(err.message)
        raise err
    return WatchEvent(event_type, obj)
