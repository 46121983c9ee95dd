"""The aiohttp application: middlewares (errors -> Status, authentication, metrics) and routes.

Every request is authenticated (:mod:`apiserver.authn`), then impersonation headers are applied
(:mod:`apiserver.impersonation`, asking the :mod:`apiserver.authz` authoriser); the resulting user
is left on the request (``authn.USER``). Virtual resources (the reviews, TokenRequest) are routed
to their handlers (:mod:`apiserver.virtual`) ahead of the stored resources, and so is the
resource metrics API (:mod:`apiserver.metrics_api`). The service-account
issuer's OpenID discovery document and JWKS are served as kube-apiserver serves them.

``make_app`` builds an app around an :class:`ApiContext`; ``server.py`` owns its lifecycle.
Every failure leaves as a Kubernetes ``Status``: our own ``ApiError``s, aiohttp's HTTP
exceptions (413 for oversized bodies, 405, 404) and any unexpected exception (500, logged) --
except a path outside every served API, which gets kube-apiserver's plain-text
``404 page not found``. Discovery paths answer with or without a trailing slash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from apiserver import discovery, metrics_api, openapi, openapi_v2, reviews, tokenrequest, virtual, webhooks
from apiserver.authn import AUTHENTICATOR, USER, Authenticator
from apiserver.authz import AUTHORIZER
from apiserver.context import CONTEXT, ApiContext
from apiserver.handlers import handle_resource
from apiserver.impersonation import impersonated
from apiserver.rbac import ACCESS_REVIEWS, authorize_request, install_rbac
from apiserver.requests import RESOURCE, SUBRESOURCE, VERB, json_response, page_not_found, status_response
from apiserver.routing import PageNotFound, route_not_found, served_group, under_served_api
from apiserver.tokens import ServiceAccountTokens
from machinery.errors import (
    ApiError,
    MethodNotAllowedError,
    NotFoundError,
    RequestEntityTooLargeError,
)
from machinery.pki import ClusterPki
from machinery.resources import ResourceInfo

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_TO_ERROR: dict[int, type[ApiError]] = {
    405: MethodNotAllowedError,
    413: RequestEntityTooLargeError,
}


def _status_response(err: ApiError) -> web.Response:
    resp = status_response(err.to_status(), code=err.code)
    if err.retry_after_seconds is not None:
        resp.headers["Retry-After"] = str(err.retry_after_seconds)
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    start = time.perf_counter()
    code = 500
    try:
        user = await request.app[AUTHENTICATOR].authenticate(request)
        request[USER] = await impersonated(request, user, request.app[AUTHORIZER])
        await authorize_request(request, request[USER], request.app[AUTHORIZER])
        response = await handler(request)
        code = response.status
        return response
    except ApiError as err:
        code = err.code
        return _status_response(err)
    except PageNotFound:
        code = 404
        return page_not_found()
    except web.HTTPException as exc:
        code = exc.status
        if exc.status < 400:
            raise
        if exc.status == 404:
            # No route: a miss under a served API is a Status, anything else the catch-all page.
            return _status_response(route_not_found()) if under_served_api(request.path) else page_not_found()
        cls = _HTTP_TO_ERROR.get(exc.status, ApiError)
        message = exc.text or exc.reason
        if exc.status == 413:
            message = "Request entity too large: limit is 3145728"
        return _status_response(cls(message))
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path_qs)
        return _status_response(ApiError("an internal error occurred; see the apiserver log"))
    finally:
        verb = request.get(VERB, request.method.lower())
        if verb != "watch":
            resource = request.get(RESOURCE, "")
            sub = request.get(SUBRESOURCE, "")
            ctx.metrics.requests.labels(verb.upper(), resource, sub, str(code)).inc()
            ctx.metrics.latency.labels(verb.upper(), resource, sub).observe(time.perf_counter() - start)


async def _version(request: web.Request) -> web.Response:
    return json_response(discovery.VERSION_INFO)


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def _ready(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ready = ctx.caches.ready.is_set()
    if not ready:
        return web.Response(text="[-]watch-cache not ready\nreadyz check failed", status=500,
                            content_type="text/plain")
    return web.Response(text="ok", content_type="text/plain")


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[CONTEXT].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def _api(request: web.Request) -> web.Response:
    version = discovery.wants_aggregated(request.headers.get("Accept", ""))
    if version:
        return json_response(discovery.aggregated(version, True),
                             content_type=discovery.aggregated_content_type(version))
    return json_response(discovery.legacy_api_versions(request.app[CONTEXT].server_address))


async def _apis(request: web.Request) -> web.Response:
    version = discovery.wants_aggregated(request.headers.get("Accept", ""))
    if version:
        return json_response(discovery.aggregated(version, False),
                             content_type=discovery.aggregated_content_type(version))
    return json_response(discovery.api_group_list())


async def _api_v1(request: web.Request) -> web.Response:
    body = discovery.resource_list("", "v1")
    assert body is not None
    return json_response(body)


async def _apis_group(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    body = discovery.api_group(group)
    if body is None:
        raise PageNotFound(request.path)
    return json_response(body)


async def _apis_group_version(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    if not served_group(group):
        raise PageNotFound(request.path)
    body = discovery.resource_list(group, request.match_info["version"])
    if body is None:
        raise route_not_found()
    return json_response(body)


async def _openapi_index(request: web.Request) -> web.Response:
    return json_response(openapi.index_document())


async def _openapi_gv(request: web.Request) -> web.Response:
    parts = request.match_info["tail"].strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        group, version = "", parts[1]
    elif len(parts) == 3 and parts[0] == "apis":
        group, version = parts[1], parts[2]
    else:
        raise NotFoundError("the server could not find the requested resource")
    if discovery.resource_list(group, version) is None:
        raise NotFoundError("the server could not find the requested resource")
    resp = json_response(openapi.group_version_document(group, version))
    resp.headers["Cache-Control"] = "public, immutable"
    return resp


async def _openapi_v2(request: web.Request) -> web.Response:
    """Protobuf for kubectl 1.27/1.28 (see apiserver/openapi_v2.py), JSON for everyone else."""
    if "protobuf" in request.headers.get("Accept", ""):
        return web.Response(body=openapi_v2.protobuf_document(), content_type=openapi_v2.PROTOBUF_CONTENT_TYPE)
    return json_response(openapi_v2.json_document())


VIRTUAL_RESOURCES: tuple[virtual.VirtualResource, ...] = (
    virtual.VirtualResource("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", reviews.token_review),
    *(virtual.VirtualResource("authentication.k8s.io", v, "SelfSubjectReview", "selfsubjectreviews",
                              reviews.self_subject_review) for v in ("v1", "v1beta1", "v1alpha1")),
    virtual.VirtualResource("authentication.k8s.io", "v1", "TokenRequest", "serviceaccounts",
                            tokenrequest.token_request, namespaced=True, subresource="token", path_group="v1"),
)


async def _openid_configuration(request: web.Request) -> web.Response:
    return json_response(request.app[AUTHENTICATOR].tokens.openid_configuration())


async def _jwks(request: web.Request) -> web.Response:
    return json_response(request.app[AUTHENTICATOR].tokens.jwks(), content_type="application/jwk-set+json")


def service_account_tokens(ctx: ApiContext) -> ServiceAccountTokens:
    """The signer/verifier of service-account tokens, keyed by the cluster PKI's ``sa.key``."""
    settings = ctx.settings
    key = ClusterPki.at(settings.pki_dir).service_account_signing_key()
    return ServiceAccountTokens(key, issuer=settings.service_account_issuer, audiences=settings.api_audiences)


def make_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[error_middleware, webhooks.admission_middleware],
                          client_max_size=ctx.settings.max_request_bytes)
    app[webhooks.WEBHOOKS] = webhooks.AdmissionWebhooks(ctx.caches, ctx.settings.dial_networks)
    app.on_response_prepare.append(webhooks.add_warning_headers)
    app.on_cleanup.append(webhooks.close_webhooks)
    app[CONTEXT] = ctx

    async def get_object(resource: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any] | None:
        return await virtual.cached_object(ctx, resource, namespace, name)

    app[AUTHENTICATOR] = Authenticator(service_account_tokens(ctx), get_object)
    install_rbac(app, ctx)
    r = app.router
    for path in ("/healthz", "/livez"):
        r.add_get(path, _health)
    r.add_get("/readyz", _ready)
    r.add_get("/metrics", _metrics)
    # kube-apiserver's router ignores a trailing slash: the Python client asks for /version/.
    for path, handler in (("/version", _version), ("/api", _api), ("/api/v1", _api_v1), ("/apis", _apis),
                          ("/apis/{group}", _apis_group), ("/apis/{group}/{version}", _apis_group_version)):
        r.add_get(path, handler)
        r.add_get(path + "/", handler)
    r.add_get("/openapi/v2", _openapi_v2)
    r.add_get("/openapi/v3", _openapi_index)
    r.add_get("/openapi/v3/{tail:.+}", _openapi_gv)
    r.add_get("/.well-known/openid-configuration", _openid_configuration)
    r.add_get("/openid/v1/jwks", _jwks)
    virtual.add_routes(app, (*VIRTUAL_RESOURCES, *ACCESS_REVIEWS))
    metrics_api.add_routes(app)
    for prefix in ("/api/v1/", "/apis/"):
        r.add_route("*", prefix + "{tail:.+}", handle_resource)
    return app
