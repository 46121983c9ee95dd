"""Posting an AdmissionReview to a webhook: where to dial, whom to trust, how long to wait.

``clientConfig.url`` is dialled as written; ``clientConfig.service`` is resolved from the
apiserver's own watch caches (the Service, its port's ``targetPort``, the Endpoints' ready
addresses) to one ready endpoint, dialled directly: kube-apiserver would dial the Service's
ClusterIP through the node's service proxy, and the apiserver process has no service proxy of its
own. TLS is always verified: against ``caBundle`` when given (the system roots otherwise), for the
server name ``<service>.<namespace>.svc`` (or the URL's host).

Guarantees: every dial goes through ``machinery.netguard`` (loopback, the service CIDR and
``--allowed-networks`` only; a host name other than ``localhost`` is refused without a lookup),
so a refused destination is a failed call that follows the webhook's failurePolicy. One shared
aiohttp session, a bounded pool per destination (a hanging webhook cannot starve the others),
and a hard deadline of ``timeoutSeconds`` per call. Errors leave as :class:`CallError` with
Kubernetes' wording (``failed to call webhook: ...``).
"""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Any

import aiohttp
import orjson

from apiserver.watchcache import WatchCaches
from apiserver.webhooks.config import Webhook
from machinery.netguard import AllowedNetworks, DestinationRefusedError, check_destination, guarded_connector
from machinery.resources import lookup

POOL_PER_DESTINATION = 64
POOL_TOTAL = 512


class CallError(Exception):
    """The webhook could not be called or answered nonsense (follows failurePolicy)."""


class WebhookClient:
    """One shared HTTPS client for every webhook call of an apiserver."""

    def __init__(self, caches: WatchCaches, allowed: AllowedNetworks) -> None:
        self.caches = caches
        self.allowed = allowed
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[bytes | None, ssl.SSLContext] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = guarded_connector(self.allowed, limit=POOL_TOTAL, limit_per_host=POOL_PER_DESTINATION,
                                          keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl(self, ca_bundle: bytes | None) -> ssl.SSLContext:
        context = self._contexts.get(ca_bundle)
        if context is None:
            try:
                context = (ssl.create_default_context(cadata=ca_bundle.decode("ascii", "replace"))
                           if ca_bundle else ssl.create_default_context())
            except (ssl.SSLError, ValueError) as exc:
                raise CallError(f"invalid caBundle: {exc}") from None
            self._contexts[ca_bundle] = context
        return context

    # ---- where -----------------------------------------------------------------------------
    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = lookup("", "v1", plural)
        if resource is None:
            return None
        return self.caches.get(resource).get(resource.storage_key(namespace, name))

    def resolve_service(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """A ready endpoint (address, port) behind the Service's ``port``."""
        svc = self._get("services", namespace, name)
        if svc is None:
            raise CallError(f'service "{namespace}/{name}" not found')
        spec = svc.get("spec") or {}
        service_port = next((p for p in spec.get("ports") or [] if int(p.get("port") or 0) == port), None)
        if service_port is None:
            raise CallError(f'no service port {port} found for service "{name}"')
        port_name = service_port.get("name") or ""
        target = service_port.get("targetPort", port)
        endpoints = self._get("endpoints", namespace, name)
        candidates: list[tuple[str, int]] = []
        for subset in (endpoints or {}).get("subsets") or []:
            ports = subset.get("ports") or []
            chosen = next((p for p in ports if (p.get("name") or "") == port_name), None)
            if chosen is None and len(ports) == 1 and isinstance(target, int):
                chosen = ports[0] if int(ports[0].get("port") or 0) == target else None
            if chosen is None:
                continue
            candidates.extend((str(a["ip"]), int(chosen["port"])) for a in subset.get("addresses") or []
                              if a.get("ip"))
        if not candidates:
            raise CallError(f'no endpoints available for service "{name}"')
        return random.choice(candidates)

    def destination(self, hook: Webhook, timeout: int) -> tuple[str, str | None]:
        """(URL to post to, TLS server name to verify or None for the URL's host)."""
        query = f"?timeout={timeout}s"
        if hook.url is not None:
            return hook.url + query, None
        assert hook.service is not None
        namespace, name, path, port = hook.service
        address, target_port = self.resolve_service(namespace, name, port)
        checked = check_destination(address, self.allowed, what=f'the endpoint of webhook "{hook.name}"')
        host = f"[{checked}]" if checked.version == 6 else str(checked)
        return f"https://{host}:{target_port}{path or '/'}{query}", f"{name}.{namespace}.svc"

    # ---- call ------------------------------------------------------------------------------
    async def post(self, hook: Webhook, review: dict[str, Any]) -> Any:
        """POST the review; the decoded JSON answer. Raises :class:`CallError`."""
        timeout = hook.timeout_seconds
        try:
            url, server_name = self.destination(hook, timeout)
        except DestinationRefusedError as exc:
            raise CallError(f"failed to call webhook: {exc.message}") from None
        except CallError as exc:
            raise CallError(f"failed to call webhook: {exc}") from None
        context = self._ssl(hook.ca_bundle)
        body = orjson.dumps(review)
        try:
            async with asyncio.timeout(timeout):
                async with self._client().post(
                        url, data=body, ssl=context, server_hostname=server_name,
                        headers={"Content-Type": "application/json", "Accept": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                    payload = await response.read()
                    status = response.status
        except TimeoutError:
            raise CallError(f'failed to call webhook: Post "{url}": context deadline exceeded') from None
        except DestinationRefusedError as exc:
            raise CallError(f"failed to call webhook: {exc.message}") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise CallError(f'failed to call webhook: Post "{url}": {exc or type(exc).__name__}') from None
        if not 200 <= status < 300:
            raise CallError(f"failed to call webhook: the server responded with the status code {status} "
                            f"but did not return more information")
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise CallError(f"failed to call webhook: the response is not JSON: {exc}") from None
