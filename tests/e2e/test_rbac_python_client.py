"""The official ``kubernetes`` Python client's RbacAuthorizationV1Api and AuthorizationV1Api
against kubelab, on both stores: every answer must deserialize into the client's models."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer
from tests.e2e.pyclient import client, new_client

RBAC_GROUP = "rbac.authorization.k8s.io"


@pytest.fixture
def api_client(module_cluster: RunningApiServer) -> Iterator[Any]:
    api = new_client(module_cluster)
    yield api
    api.close()


def test_roles_and_bindings_crud(api_client: Any) -> None:
    rbac, core = client.RbacAuthorizationV1Api(api_client), client.CoreV1Api(api_client)
    ns = f"py-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    rule = client.V1PolicyRule(verbs=["get", "list"], api_groups=[""], resources=["pods"])
    role = rbac.create_namespaced_role(ns, client.V1Role(metadata=client.V1ObjectMeta(name="reader"), rules=[rule]))
    assert role.metadata.uid and role.rules[0].resources == ["pods"]
    role.rules[0].verbs = ["get", "list", "watch"]
    replaced = rbac.replace_namespaced_role("reader", ns, role)
    assert replaced.rules[0].verbs == ["get", "list", "watch"]
    patched = rbac.patch_namespaced_role("reader", ns, {"metadata": {"labels": {"team": "a"}}})
    assert patched.metadata.labels == {"team": "a"}
    binding = rbac.create_namespaced_role_binding(ns, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="reads"),
        role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="Role", name="reader"),
        subjects=[client.RbacV1Subject(kind="User", name="carol")]))
    assert binding.subjects[0].api_group == RBAC_GROUP, "defaulted as Kubernetes does"
    assert [b.metadata.name for b in rbac.list_namespaced_role_binding(ns).items] == ["reads"]
    binding.role_ref.name = "other"
    with pytest.raises(ApiException) as refused:
        rbac.replace_namespaced_role_binding("reads", ns, binding)
    assert refused.value.status == 422 and "cannot change roleRef" in str(refused.value.body)
    rbac.delete_namespaced_role("reader", ns)
    assert rbac.list_namespaced_role(ns).items == []


def test_cluster_roles_with_aggregation(api_client: Any) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    edit = rbac.read_cluster_role("edit")
    assert edit.aggregation_rule.cluster_role_selectors[0].match_labels == {
        "rbac.authorization.k8s.io/aggregate-to-edit": "true"}
    names = {r.metadata.name for r in rbac.list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view", "system:node", "system:kube-scheduler"} <= names
    name = f"aggregated-{uuid.uuid4().hex[:8]}"
    rbac.create_cluster_role(client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=name),
        aggregation_rule=client.V1AggregationRule(cluster_role_selectors=[
            client.V1LabelSelector(match_labels={"example.com/aggregate-to": name})])))
    crb = rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=name),
        subjects=[client.RbacV1Subject(kind="Group", name="example")]))
    assert crb.role_ref.name == name
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def test_access_reviews(api_client: Any) -> None:
    authz = client.AuthorizationV1Api(api_client)
    mine = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
            verb="delete", resource="nodes"))))
    assert mine.status.allowed is True, "the admin is in system:masters"
    theirs = authz.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="nobody", resource_attributes=client.V1ResourceAttributes(verb="list", resource="pods",
                                                                        namespace="default"))))
    assert theirs.status.allowed is False
    discovery = authz.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user="nobody", groups=["system:authenticated"],
        non_resource_attributes=client.V1NonResourceAttributes(verb="get", path="/apis"))))
    assert discovery.status.allowed is True
    rules = authz.create_self_subject_rules_review(client.V1SelfSubjectRulesReview(
        spec=client.V1SelfSubjectRulesReviewSpec(namespace="default")))
    assert rules.status.incomplete is False and rules.status.resource_rules[0].verbs == ["*"]


def test_a_new_binding_takes_effect(api_client: Any) -> None:
    rbac, authz = client.RbacAuthorizationV1Api(api_client), client.AuthorizationV1Api(api_client)
    user = f"dana-{uuid.uuid4().hex[:6]}"
    rbac.create_namespaced_role_binding("default", client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name=user),
        role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name="view"),
        subjects=[client.RbacV1Subject(kind="User", name=user, api_group=RBAC_GROUP)]))
    review = client.V1LocalSubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, resource_attributes=client.V1ResourceAttributes(verb="list", resource="pods")))
    deadline = time.monotonic() + 30
    while not authz.create_namespaced_local_subject_access_review("default", review).status.allowed:
        assert time.monotonic() < deadline, "the binding never took effect"
        time.sleep(0.2)
