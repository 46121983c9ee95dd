"""Service-account tokens end to end on an embedded apiserver: TokenRequest issues them, bearer
authentication accepts only valid ones (401 otherwise), TokenReview and SelfSubjectReview report
who they stand for, impersonation headers take effect, and the issuer's JWKS verifies them."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from apiserver.tokens import ObjectRef, ServiceAccountTokens
from machinery.kubeconfig import load_kubeconfig
from machinery.pki import ClusterPki
from tests.apiserver.conftest import Api, embedded_api

AUDIENCE = "https://kubernetes.default.svc.cluster.local"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class Bearer:
    """A client that presents a bearer token and no client certificate."""

    def __init__(self, session: aiohttp.ClientSession, server: str) -> None:
        self.session, self.server = session, server

    async def request(self, method: str, path: str, token: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        async with self.session.request(method, self.server + path, data=data, headers=hdrs) as resp:
            return resp.status, orjson.loads(await resp.read())


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Api, Bearer]]:
    async with embedded_api(tmp_path) as api:
        entry = load_kubeconfig(api.settings.kubeconfig_path)
        # Trust the cluster CA but present no client certificate.
        plain = ssl.create_default_context(cafile=str(ClusterPki.at(api.settings.pki_dir).ca_cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=plain)) as session:
            yield api, Bearer(session, entry.server)


async def _service_account(api: Api, name: str = "robot", namespace: str = "default") -> dict[str, Any]:
    status, sa = await api.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                                   {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    assert status == 201, sa
    return sa


async def _token(api: Api, name: str = "robot", spec: dict[str, Any] | None = None,
                 namespace: str = "default") -> tuple[int, Any]:
    return await api.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                             {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec or {}})


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_token_request_issues_a_kubernetes_shaped_token(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    sa = await _service_account(api)
    status, tr = await _token(api)
    assert status == 201, tr
    assert tr["kind"] == "TokenRequest" and tr["spec"]["expirationSeconds"] == 3600
    claims = _claims(tr["status"]["token"])
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["aud"] == [AUDIENCE] and claims["iss"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "robot", "uid": sa["metadata"]["uid"]}
    assert claims["kubernetes.io"]["namespace"] == "default"


async def test_bearer_token_authenticates_as_the_service_account(cluster: tuple[Api, Bearer]) -> None:
    api, bearer = cluster
    sa = await _service_account(api)
    _, tr = await _token(api)
    status, review = await bearer.request("POST", SSR, tr["status"]["token"],
                                          {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert status == 201, review
    user = review["status"]["userInfo"]
    assert user["username"] == "system:serviceaccount:default:robot"
    assert user["uid"] == sa["metadata"]["uid"]
    assert user["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    # Authenticated (not 401) as the service account, which RBAC has granted nothing yet.
    status, pods = await bearer.request("GET", "/api/v1/namespaces/default/pods", tr["status"]["token"])
    assert status == 403 and 'User "system:serviceaccount:default:robot"' in pods["message"]


@pytest.mark.parametrize("spec,message", [
    pytest.param({"expirationSeconds": 60}, "may not specify a duration less than 10 minutes", id="too-short"),
    pytest.param({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}},
                 'Unsupported value: "ConfigMap"', id="bad-kind"),
])
async def test_token_request_validation(cluster: tuple[Api, Bearer], spec: dict[str, Any], message: str) -> None:
    api, _ = cluster
    await _service_account(api)
    status, body = await _token(api, spec=spec)
    assert status == 422 and body["reason"] == "Invalid" and message in body["message"], body


async def test_token_request_caps_and_honours_expiration(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    await _service_account(api)
    _, tr = await _token(api, spec={"expirationSeconds": 900})
    claims = _claims(tr["status"]["token"])
    assert claims["exp"] - claims["iat"] == 900
    _, tr = await _token(api, spec={"expirationSeconds": 10 * 365 * 86400})
    assert tr["spec"]["expirationSeconds"] == api.settings.service_account_max_token_seconds


async def test_token_for_missing_service_account_is_not_found(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    status, body = await _token(api, name="ghost")
    assert status == 404 and body["message"] == 'serviceaccounts "ghost" not found'


def _unauthorized(status: int, body: Any) -> bool:
    return status == 401 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


async def test_expired_token_is_unauthorized(cluster: tuple[Api, Bearer]) -> None:
    api, bearer = cluster
    sa = await _service_account(api)
    key = ClusterPki.at(api.settings.pki_dir).service_account_signing_key()
    past = ServiceAccountTokens(key, issuer=AUDIENCE, audiences=[AUDIENCE], clock=lambda: time.time() - 7200)
    token, _ = past.issue(namespace="default", service_account=ObjectRef("robot", sa["metadata"]["uid"]),
                          audiences=[AUDIENCE], expiration_seconds=3600)
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", token))
    status, review = await api.request("POST", TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1",
                                                               "kind": "TokenReview", "spec": {"token": token}})
    assert status == 201 and not review["status"].get("authenticated")
    assert "service account token has expired" in review["status"]["error"]


async def test_tampered_token_is_unauthorized(cluster: tuple[Api, Bearer]) -> None:
    api, bearer = cluster
    await _service_account(api)
    await _service_account(api, "admin-bot")
    _, tr = await _token(api)
    header, payload, signature = tr["status"]["token"].split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "system:serviceaccount:default:admin-bot"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", f"{header}.{forged}.{signature}"))
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", "not-a-jwt"))


async def test_wrong_audience_is_unauthorized(cluster: tuple[Api, Bearer]) -> None:
    api, bearer = cluster
    await _service_account(api)
    _, tr = await _token(api, spec={"audiences": ["istio-ca"]})
    token = tr["status"]["token"]
    assert _claims(token)["aud"] == ["istio-ca"]
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", token))
    # ... yet a TokenReview for that audience accepts it (what a mesh CA asks).
    _, review = await api.request("POST", TOKEN_REVIEWS, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["istio-ca"]}})
    assert review["status"]["authenticated"] is True and review["status"]["audiences"] == ["istio-ca"]
    assert review["status"]["user"]["username"] == "system:serviceaccount:default:robot"


async def test_token_of_deleted_service_account_is_unauthorized(cluster: tuple[Api, Bearer]) -> None:
    api, bearer = cluster
    await _service_account(api)
    _, tr = await _token(api)
    token = tr["status"]["token"]
    assert (await bearer.request("GET", "/api", token))[0] == 200
    status, _ = await api.request("DELETE", "/api/v1/namespaces/default/serviceaccounts/robot")
    assert status == 200
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", token))
    await _service_account(api)  # same name, new uid: the old token still does not count
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", token))


async def test_pod_bound_token_dies_with_the_pod(cluster: tuple[Api, Bearer]) -> None:
    api, bearer = cluster
    await _service_account(api)
    status, pod = await api.request("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "robot", "automountServiceAccountToken": False,
                 "containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, pod
    status, tr = await _token(api, spec={"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}})
    assert status == 201, tr
    token = tr["status"]["token"]
    assert _claims(token)["kubernetes.io"]["pod"] == {"name": "p", "uid": pod["metadata"]["uid"]}
    status, review = await bearer.request("POST", SSR, token, {"apiVersion": "authentication.k8s.io/v1",
                                                               "kind": "SelfSubjectReview"})
    extra = review["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == ["p"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    status, _ = await api.request("DELETE", "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0")
    assert status == 200
    assert _unauthorized(*await bearer.request("GET", "/api/v1/namespaces", token))


async def test_pod_bound_token_refuses_a_pod_of_another_service_account(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    await _service_account(api)
    await api.request("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"automountServiceAccountToken": False, "containers": [{"name": "c", "image": "busybox"}]}})
    status, body = await _token(api, spec={"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}})
    assert status == 400 and "different serviceaccount name" in body["message"]
    status, body = await _token(api, spec={"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "nope"}})
    assert status == 404


async def test_self_subject_review_of_the_admin_and_impersonation(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    status, review = await api.request("POST", SSR, body)
    assert status == 201
    assert review["status"]["userInfo"] == {"username": "kubernetes-admin",
                                            "groups": ["system:masters", "system:authenticated"]}
    status, review = await api.request("POST", SSR, body, headers={
        "Impersonate-User": "jane", "Impersonate-Group": "devs", "Impersonate-Uid": "u-1",
        "Impersonate-Extra-Scopes": "view"})
    assert status == 201, review
    assert review["status"]["userInfo"] == {"username": "jane", "uid": "u-1",
                                            "groups": ["devs", "system:authenticated"],
                                            "extra": {"scopes": ["view"]}}
    status, review = await api.request("POST", SSR, body, headers={"Impersonate-Group": "devs"})
    assert status == 400 and "without impersonating a user" in review["message"]


async def test_review_resources_are_create_only_and_discovered(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    status, body = await api.request("GET", SSR)
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    status, body = await api.request("GET", "/apis/authentication.k8s.io/v1")
    assert status == 200
    names = {r["name"]: r["verbs"] for r in body["resources"]}
    assert names["selfsubjectreviews"] == ["create"] and names["tokenreviews"] == ["create"]
    status, body = await api.request("GET", "/api/v1")
    assert {"name": "serviceaccounts/token", "singularName": "", "namespaced": True, "kind": "TokenRequest",
            "verbs": ["create"], "group": "authentication.k8s.io", "version": "v1"} in body["resources"]


async def test_jwks_verifies_issued_tokens(cluster: tuple[Api, Bearer]) -> None:
    api, _ = cluster
    await _service_account(api)
    _, tr = await _token(api)
    status, config = await api.request("GET", "/.well-known/openid-configuration")
    assert status == 200 and config["issuer"] == AUDIENCE
    assert config["jwks_uri"] == f"{AUDIENCE}/openid/v1/jwks"
    status, jwks = await api.request("GET", "/openid/v1/jwks")
    assert status == 200
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    token = tr["status"]["token"]
    assert jwt.get_unverified_header(token)["kid"] == key.key_id
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE)
    assert claims["sub"] == "system:serviceaccount:default:robot"
