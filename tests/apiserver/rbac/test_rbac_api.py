"""RBAC through a real apiserver (embedded; SQLite and etcd): Forbidden wording, bindings taking
effect, escalation prevention, the access reviews, validation and the default policy.

Users are played by the admin (``system:masters``) impersonating them, which also proves that
impersonation asks the same authorizer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from machinery.pki import ClusterPki
from tests.apiserver.conftest import Api, embedded_api
from tests.etcd_server import EtcdServer

RBAC = "/apis/rbac.authorization.k8s.io/v1"
AUTHZ = "/apis/authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"


def as_user(name: str, *groups: str) -> dict[str, str]:
    headers = {"Impersonate-User": name}
    if groups:
        headers["Impersonate-Group"] = groups[0]  # aiohttp sends one value per key; tests use one group
    return headers


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    overrides: dict[str, Any] = {}
    if request.param == "etcd":
        etcd: EtcdServer = request.getfixturevalue("etcd_server")
        overrides = {"etcd_servers": [etcd.client_url], "etcd_prefix": f"/rbac-{tmp_path.name}"}
    async with embedded_api(tmp_path, store=request.param, **overrides) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def create(api: Api, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    status, obj = await api.request("POST", path, body, headers=headers)
    assert status == 201, obj
    return obj


async def namespace(api: Api, name: str) -> None:
    await create(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def role_binding(name: str, ref_kind: str, ref: str, user: str) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": ref_kind, "name": ref},
            "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": user}]}


async def grant(api: Api, ns: str, cluster_role: str, user: str) -> None:
    """Bind ``cluster_role`` to ``user`` in ``ns`` and wait until it takes effect."""
    await create(api, f"{RBAC}/namespaces/{ns}/rolebindings", role_binding(f"{user}-{cluster_role}", "ClusterRole",
                                                                           cluster_role, user))

    async def effective() -> bool:
        status, review = await api.request("POST", f"{AUTHZ}/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "resourceAttributes": {"namespace": ns, "verb": "get", "resource": "configmaps"}}})
        return bool(status == 201 and review["status"]["allowed"])
    await eventually(effective)


@pytest.mark.parametrize(("method", "path", "message"), [
    pytest.param("GET", "/api/v1/namespaces/default/pods",
                 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace '
                 '"default"', id="list"),
    pytest.param("GET", "/api/v1/pods",
                 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope',
                 id="cluster-scope"),
    pytest.param("GET", "/api/v1/namespaces/default/pods/web/log",
                 'pods "web" is forbidden: User "alice" cannot get resource "pods/log" in API group "" in the '
                 'namespace "default"', id="subresource"),
    pytest.param("DELETE", "/apis/apps/v1/namespaces/default/deployments/web",
                 'deployments.apps "web" is forbidden: User "alice" cannot delete resource "deployments" in API '
                 'group "apps" in the namespace "default"', id="named-group"),
    pytest.param("GET", "/metrics", 'forbidden: User "alice" cannot get path "/metrics"', id="non-resource"),
])
async def test_forbidden_is_worded_as_kubernetes(api: Api, method: str, path: str, message: str) -> None:
    status, body = await api.request(method, path, headers=as_user("alice"))
    assert status == 403, body
    assert body["reason"] == "Forbidden" and body["message"] == message


async def test_authenticated_users_reach_discovery_and_reviews_but_not_resources(api: Api) -> None:
    headers = as_user("alice")
    for path in ("/api", "/apis", "/version", "/api/v1", "/apis/apps/v1", "/healthz", "/openapi/v3"):
        status, _ = await api.request("GET", path, headers=headers)
        assert status == 200, path
    status, _ = await api.request("GET", "/api/v1/namespaces", headers=headers)
    assert status == 403


async def test_a_role_binding_opens_one_namespace_only(api: Api) -> None:
    await namespace(api, "alice")
    await namespace(api, "bob")
    await grant(api, "alice", "edit", "alice")
    await create(api, "/api/v1/namespaces/alice/configmaps",
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, headers=as_user("alice"))
    status, listed = await api.request("GET", "/api/v1/namespaces/alice/configmaps", headers=as_user("alice"))
    assert status == 200 and [c["metadata"]["name"] for c in listed["items"]] == ["c"]
    status, body = await api.request("GET", "/api/v1/namespaces/bob/configmaps", headers=as_user("alice"))
    assert status == 403 and 'in the namespace "bob"' in body["message"]
    status, _ = await api.request("GET", f"{RBAC}/namespaces/alice/rolebindings", headers=as_user("alice"))
    assert status == 403, "rolebindings are admin's, not edit's"


async def test_escalation_needs_the_rights_being_granted(api: Api) -> None:
    await namespace(api, "team")
    await grant(api, "team", "admin", "alice")
    alice = as_user("alice")
    roles = f"{RBAC}/namespaces/team/roles"
    held = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "Role", "metadata": {"name": "cm-reader"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]}]}
    await create(api, roles, held, headers=alice)
    more = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "Role", "metadata": {"name": "node-reader"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes"]}]}
    status, body = await api.request("POST", roles, more, headers=alice)
    assert status == 403, body
    assert body["message"] == (
        'roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "alice" (groups=["system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}')
    bindings = f"{RBAC}/namespaces/team/rolebindings"
    await create(api, bindings, role_binding("bob-reads", "Role", "cm-reader", "bob"), headers=alice)
    status, body = await api.request("POST", bindings, role_binding("bob-admin", "ClusterRole", "cluster-admin",
                                                                    "bob"), headers=alice)
    assert status == 403 and "is attempting to grant RBAC permissions not currently held" in body["message"]
    status, body = await api.request("POST", bindings, role_binding("x", "Role", "missing", "bob"), headers=alice)
    assert status == 403
    assert body["message"] == ('rolebindings.rbac.authorization.k8s.io "x" is forbidden: '
                               'roles.rbac.authorization.k8s.io "missing" not found')
    # the bind verb on one role lifts the check for that role only
    await create(api, f"{RBAC}/clusterroles", {
        "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": {"name": "binder"},
        "rules": [{"verbs": ["bind"], "apiGroups": [RBAC_GROUP], "resources": ["clusterroles"],
                   "resourceNames": ["cluster-admin"]}]})
    await create(api, f"{RBAC}/clusterrolebindings", {
        "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "alice-binder"},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "binder"},
        "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": "alice"}]})

    async def may_bind() -> bool:
        status, _ = await api.request("POST", bindings + "?dryRun=All",
                                      role_binding("bob-admin", "ClusterRole", "cluster-admin", "bob"), headers=alice)
        return status == 201
    await eventually(may_bind)


async def test_access_reviews(api: Api) -> None:
    await namespace(api, "team")
    await grant(api, "team", "view", "alice")
    ssar: dict[str, Any] = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": "team", "verb": "list", "resource": "pods"}}}
    status, review = await api.request("POST", f"{AUTHZ}/selfsubjectaccessreviews", ssar, headers=as_user("alice"))
    assert status == 201 and review["status"]["allowed"] is True
    ssar["spec"]["resourceAttributes"]["verb"] = "delete"
    status, review = await api.request("POST", f"{AUTHZ}/selfsubjectaccessreviews", ssar, headers=as_user("alice"))
    assert status == 201 and review["status"]["allowed"] is False
    # SubjectAccessReview needs create on subjectaccessreviews, which alice lacks
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "bob", "resourceAttributes": {"verb": "list", "resource": "pods"}}}
    status, _ = await api.request("POST", f"{AUTHZ}/subjectaccessreviews", sar, headers=as_user("alice"))
    assert status == 403
    status, body = await api.request("POST", f"{AUTHZ}/subjectaccessreviews",
                                     {**sar, "spec": {"resourceAttributes": {"verb": "get"}}})
    assert status == 422 and "at least one of user or group must be specified" in body["message"]
    lsar = {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
            "spec": {"user": "alice", "resourceAttributes": {"verb": "watch", "resource": "pods"}}}
    status, review = await api.request("POST", f"{AUTHZ}/namespaces/team/localsubjectaccessreviews", lsar)
    assert status == 201 and review["status"]["allowed"] is True
    assert review["spec"]["resourceAttributes"]["namespace"] == "team"
    ssrr = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "team"}}
    status, review = await api.request("POST", f"{AUTHZ}/selfsubjectrulesreviews", ssrr, headers=as_user("alice"))
    assert status == 201 and review["status"]["incomplete"] is False
    pods_rules = [r for r in review["status"]["resourceRules"] if "pods" in r["resources"]]
    assert pods_rules and set(pods_rules[0]["verbs"]) == {"get", "list", "watch"}
    assert {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
            "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]} in review["status"]["nonResourceRules"]


async def test_impersonation_needs_the_impersonate_verb(api: Api, tmp_path: Path) -> None:
    pki = ClusterPki.at(api.settings.pki_dir)
    cert, key = pki.issue_client_certificate("alice", [])
    (tmp_path / "alice.crt").write_bytes(cert)
    (tmp_path / "alice.key").write_bytes(key)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(tmp_path / "alice.crt"), str(tmp_path / "alice.key"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        alice = Api(session, api.server, api.settings)
        status, body = await alice.request("GET", "/api", headers={"Impersonate-User": "bob"})
        assert status == 403
        assert body["message"] == ('users "bob" is forbidden: User "alice" cannot impersonate resource "users" in '
                                   'API group "" at the cluster scope')
        await create(api, f"{RBAC}/clusterroles", {
            "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": {"name": "be-bob"},
            "rules": [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"],
                       "resourceNames": ["bob"]}]})
        await create(api, f"{RBAC}/clusterrolebindings", {
            "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "alice-be-bob"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "be-bob"},
            "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": "alice"}]})

        async def as_bob() -> bool:
            status, review = await alice.request(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                headers={"Impersonate-User": "bob"})
            return bool(status == 201 and review["status"]["userInfo"]["username"] == "bob")
        await eventually(as_bob)
        status, _ = await alice.request("GET", "/api", headers={"Impersonate-User": "carol"})
        assert status == 403


@pytest.mark.parametrize(("body", "field", "message"), [
    pytest.param({"roleRef": {"apiGroup": "x", "kind": "Role", "name": "r"}}, "roleRef.apiGroup",
                 'Unsupported value: "x": supported values: "rbac.authorization.k8s.io"', id="ref-group"),
    pytest.param({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Pod", "name": "r"}}, "roleRef.kind",
                 'Unsupported value: "Pod": supported values: "Role", "ClusterRole"', id="ref-kind"),
    pytest.param({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
                  "subjects": [{"kind": "Robot", "name": "x"}]}, "subjects[0].kind",
                 'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"', id="subject-kind"),
    pytest.param({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
                  "subjects": [{"kind": "ServiceAccount", "apiGroup": RBAC_GROUP, "name": "sa"}]},
                 "subjects[0].apiGroup", 'Unsupported value: "rbac.authorization.k8s.io": supported values: ""',
                 id="sa-group"),
])
async def test_binding_validation(api: Api, body: dict[str, Any], field: str, message: str) -> None:
    status, got = await api.request("POST", f"{RBAC}/namespaces/default/rolebindings",
                                    {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding",
                                     "metadata": {"name": "b"}, **body})
    assert status == 422, got
    assert {"field": field, "message": message, "reason": got["details"]["causes"][0]["reason"]} in \
        got["details"]["causes"]


async def test_role_ref_is_immutable_and_rules_need_verbs(api: Api) -> None:
    rb = await create(api, f"{RBAC}/namespaces/default/rolebindings", role_binding("b", "ClusterRole", "view", "a"))
    rb["roleRef"]["name"] = "edit"
    status, body = await api.request("PUT", f"{RBAC}/namespaces/default/rolebindings/b", rb)
    assert status == 422 and "roleRef: Invalid value" in body["message"] and "cannot change roleRef" in body["message"]
    status, body = await api.request("POST", f"{RBAC}/namespaces/default/roles", {
        "apiVersion": f"{RBAC_GROUP}/v1", "kind": "Role", "metadata": {"name": "system:odd"},
        "rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]})
    assert status == 422
    causes = {(c["field"], c["message"]) for c in body["details"]["causes"]}
    assert ("rules[0].verbs", "Required value: verbs must contain at least one value") in causes
    assert ("rules[1].nonResourceURLs",
            'Invalid value: ["/x"]: namespaced rules cannot apply to non-resource URLs') in causes


async def test_default_roles_are_aggregated(api: Api) -> None:
    status, edit = await api.request("GET", f"{RBAC}/clusterroles/edit")
    assert status == 200
    assert edit["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]
    resources = {res for rule in edit["rules"] for res in rule.get("resources", [])}
    assert {"pods", "deployments", "configmaps", "secrets"} <= resources
    status, admin = await api.request("GET", f"{RBAC}/clusterroles/admin")
    assert {"rolebindings", "pods"} <= {res for rule in admin["rules"] for res in rule.get("resources", [])}
    status, binding = await api.request("GET", f"{RBAC}/clusterrolebindings/cluster-admin")
    assert binding["subjects"] == [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": "system:masters"}]


async def test_restart_repairs_defaults_unless_autoupdate_is_false(tmp_path: Path) -> None:
    async with embedded_api(tmp_path, store="sqlite") as api:
        for name, annotations in (("system:basic-user", {}),
                                  ("system:aggregate-to-view",
                                   {"rbac.authorization.kubernetes.io/autoupdate": "false"})):
            status, role = await api.request("GET", f"{RBAC}/clusterroles/{name}")
            role["rules"] = [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]
            role["metadata"]["annotations"] = annotations
            status, body = await api.request("PUT", f"{RBAC}/clusterroles/{name}", role)
            assert status == 200, body
        status, _ = await api.request("DELETE", f"{RBAC}/clusterrolebindings/system:discovery")
        assert status == 200
    async with embedded_api(tmp_path, store="sqlite") as api:
        _, basic = await api.request("GET", f"{RBAC}/clusterroles/system:basic-user")
        resources = {res for rule in basic["rules"] for res in rule.get("resources", [])}
        assert {"configmaps", "selfsubjectaccessreviews"} <= resources, "repaired additively"
        _, frozen = await api.request("GET", f"{RBAC}/clusterroles/system:aggregate-to-view")
        assert frozen["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]
        status, _ = await api.request("GET", f"{RBAC}/clusterrolebindings/system:discovery")
        assert status == 200, "a deleted default binding is created again"
