"""The ``metrics.k8s.io/v1beta1`` API (NodeMetrics, PodMetrics), answered from the scraper's memory.

What metrics-server serves, at the same paths, so ``kubectl top``, the HPA controller and the
official clients' ``CustomObjectsApi`` work unchanged:

* ``GET /apis/metrics.k8s.io/v1beta1/nodes[/{name}]`` -- NodeMetrics (list: ``NodeMetricsList``);
* ``GET /apis/metrics.k8s.io/v1beta1/pods`` and ``/namespaces/{ns}/pods[/{name}]`` -- PodMetrics.

Lists take ``labelSelector`` (matched against the node's or pod's current labels, which the
objects carry, as metrics-server copies them) and ``fieldSelector`` on ``metadata.name`` /
``metadata.namespace``. Only objects that still exist are listed. A missing object is a 404
``NotFound`` Status (``pods.metrics.k8s.io "web" not found``); other verbs are 405. Routes are
added by :func:`add_routes` ahead of the stored resources; the application's middleware has
already authenticated and authorised the request (RBAC on ``metrics.k8s.io`` ``pods``/``nodes``).
The scraper (``apiserver.metrics_scraper``) runs for the application's lifetime
(:func:`scraper_context`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from apiserver.context import CONTEXT
from apiserver.metrics_scraper import MetricsScraper, NodeSample, PodSample
from apiserver.requests import RESOURCE, VERB, json_response
from apiserver.watchcache import WatchCache
from machinery.errors import BadRequestError, MethodNotAllowedError, NotFoundError
from machinery.meta import now_rfc3339
from machinery.resources import NODEMETRICS, NODES, PODMETRICS, PODS
from machinery.selectors import LabelSelector, parse_label_selector

Obj = dict[str, Any]
API_VERSION = "metrics.k8s.io/v1beta1"
BASE = f"/apis/{API_VERSION}"

SCRAPER: web.AppKey[MetricsScraper] = web.AppKey("kubelab_metrics_scraper", MetricsScraper)


async def scraper_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry: run the scraper while the application runs."""
    ctx = app[CONTEXT]
    scraper = MetricsScraper(ctx, resolution=ctx.settings.metrics_resolution)
    app[SCRAPER] = scraper
    await scraper.start()
    yield
    await scraper.stop()


class _Labels:
    """Current labels of cached objects, decoded once per stored version."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[bytes, dict[str, str]]] = {}

    def of(self, cache: WatchCache, key: str) -> dict[str, str] | None:
        raw = cache.raw.get(key)
        if raw is None:
            self._seen.pop(key, None)
            return None
        known = self._seen.get(key)
        if known is not None and known[0] is raw:
            return known[1]
        labels = dict((orjson.loads(raw).get("metadata") or {}).get("labels") or {})
        self._seen[key] = (raw, labels)
        return labels


_LABELS: web.AppKey[_Labels] = web.AppKey("kubelab_metrics_labels", _Labels)


def _meta(name: str, labels: dict[str, str], now: str, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["creationTimestamp"] = now
    if labels:
        meta["labels"] = labels
    return meta


def _node_object(sample: NodeSample, labels: dict[str, str], window: str, now: str) -> Obj:
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": _meta(sample.name, labels, now),
            "timestamp": sample.timestamp, "window": window, "usage": dict(sample.usage)}


def _pod_object(sample: PodSample, labels: dict[str, str], window: str, now: str) -> Obj:
    return {"kind": "PodMetrics", "apiVersion": API_VERSION,
            "metadata": _meta(sample.name, labels, now, sample.namespace),
            "timestamp": sample.timestamp, "window": window,
            "containers": [{"name": name, "usage": dict(usage)} for name, usage in sample.containers]}


def _selectors(request: web.Request) -> tuple[LabelSelector | None, dict[str, str]]:
    labels = request.query.get("labelSelector")
    fields: dict[str, str] = {}
    for term in filter(None, (request.query.get("fieldSelector") or "").split(",")):
        key, _, value = term.partition("=")
        key = key.rstrip("=!")
        if key not in ("metadata.name", "metadata.namespace") or "!=" in term:
            raise BadRequestError(f'"{term}" is not a known field selector: only "metadata.name", '
                                  '"metadata.namespace"')
        fields[key] = value.lstrip("=")
    return (parse_label_selector(labels) if labels else None), fields


def _check_get(request: web.Request, resource: str, verb: str) -> None:
    request[RESOURCE] = resource
    request[VERB] = verb
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowedError(
            f"the server does not allow this method on the requested resource ({request.method})")


async def _nodes(request: web.Request) -> web.Response:
    name = request.match_info.get("name")
    _check_get(request, "nodes", "get" if name else "list")
    scraper, labels = request.app[SCRAPER], request.app[_LABELS]
    cache = request.app[CONTEXT].caches.get(NODES)
    if name is not None:
        sample = scraper.nodes.get(name)
        node_labels = labels.of(cache, NODES.storage_key(None, name))
        if sample is None or node_labels is None:
            raise NotFoundError(f'{NODEMETRICS.group_resource} "{name}" not found', name=name,
                                group=NODEMETRICS.group, kind=NODEMETRICS.plural)
        return json_response(_node_object(sample, node_labels, scraper.window, now_rfc3339()))
    selector, fields = _selectors(request)
    items = []
    now = now_rfc3339()
    for node_name in sorted(scraper.nodes):
        if fields.get("metadata.name", node_name) != node_name:
            continue
        node_labels = labels.of(cache, NODES.storage_key(None, node_name))
        if node_labels is None or (selector is not None and not selector.matches(node_labels)):
            continue
        items.append(_node_object(scraper.nodes[node_name], node_labels, scraper.window, now))
    return json_response({"kind": "NodeMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items})


async def _pods(request: web.Request) -> web.Response:
    namespace = request.match_info.get("namespace")
    name = request.match_info.get("name")
    _check_get(request, "pods", "get" if name else "list")
    scraper, labels = request.app[SCRAPER], request.app[_LABELS]
    cache = request.app[CONTEXT].caches.get(PODS)
    if name is not None and namespace is not None:
        sample = scraper.pods.get((namespace, name))
        pod_labels = labels.of(cache, PODS.storage_key(namespace, name))
        if sample is None or pod_labels is None:
            raise NotFoundError(f'{PODMETRICS.group_resource} "{name}" not found', name=name,
                                group=PODMETRICS.group, kind=PODMETRICS.plural)
        return json_response(_pod_object(sample, pod_labels, scraper.window, now_rfc3339()))
    selector, fields = _selectors(request)
    namespace = namespace or fields.get("metadata.namespace")
    items = []
    now = now_rfc3339()
    for (pod_namespace, pod_name), sample in sorted(scraper.pods.items()):
        if (namespace is not None and pod_namespace != namespace) or fields.get("metadata.name", pod_name) != pod_name:
            continue
        pod_labels = labels.of(cache, PODS.storage_key(pod_namespace, pod_name))
        if pod_labels is None or (selector is not None and not selector.matches(pod_labels)):
            continue
        items.append(_pod_object(sample, pod_labels, scraper.window, now))
    return json_response({"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items})


def add_routes(app: web.Application) -> None:
    """Serve the metrics API (call before the stored-resource routes: aiohttp matches in order)."""
    app[_LABELS] = _Labels()
    app.cleanup_ctx.append(scraper_context)
    routes: list[tuple[str, Callable[[web.Request], Awaitable[web.Response]]]] = [
        (f"{BASE}/nodes", _nodes), (f"{BASE}/nodes/{{name}}", _nodes), (f"{BASE}/pods", _pods),
        (f"{BASE}/namespaces/{{namespace}}/pods", _pods), (f"{BASE}/namespaces/{{namespace}}/pods/{{name}}", _pods),
    ]
    for path, handler in routes:
        app.router.add_route("*", path, handler)
        app.router.add_route("*", path + "/", handler)
