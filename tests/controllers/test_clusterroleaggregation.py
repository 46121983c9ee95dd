"""ClusterRole aggregation: the rule computation, and the controller running as the
controller-manager's own identity (not a superuser) keeping ``view``/``edit``/``admin`` current."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from controllers.clusterroleaggregation import ClusterRoleAggregationController
from controllers.settings import ControllerManagerSettings
from machinery.client import ApiClient, InformerFactory
from machinery.kubeconfig import write_kubeconfig
from machinery.pki import ClusterPki
from machinery.rbac_aggregation import aggregated_rules, converge
from machinery.resources import lookup_kind
from tests.apiserver.conftest import embedded_api
from tests.controllers.helpers import eventually

CLUSTER_ROLES = lookup_kind("rbac.authorization.k8s.io/v1", "ClusterRole")
LABEL = "rbac.authorization.k8s.io/aggregate-to-view"
WIDGETS = {"verbs": ["get", "list", "watch"], "apiGroups": ["example.com"], "resources": ["widgets"]}


def role(name: str, labels: dict[str, str] | None = None, rules: list[Any] | None = None,
         selects: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}, "rules": rules or []}
    if selects:
        out["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {selects: "true"}}]}
    return out


def test_rules_are_gathered_by_name_without_duplicates() -> None:
    a = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}
    b = {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}
    roles = [role("z", {"x": "true"}, [b, a]), role("a", {"x": "true"}, [a]), role("other", {}, [WIDGETS]),
             role("agg", {"x": "true"}, [WIDGETS], selects="x")]
    assert aggregated_rules(roles[-1], roles) == [a, b], "its own rules and unselected roles are not gathered"


def test_converge_fills_roles_aggregated_into_others() -> None:
    roles = {"view": role("view", {"to-edit": "true"}, selects="to-view"),
             "edit": role("edit", selects="to-edit"),
             "crd-view": role("crd-view", {"to-view": "true"}, [WIDGETS])}
    assert converge(roles) == {"view", "edit"}
    assert roles["edit"]["rules"] == [WIDGETS]


@contextlib.asynccontextmanager
async def as_controller_manager(tmp_path: Path) -> AsyncIterator[tuple[ApiClient, ApiClient]]:
    """(admin client, the controller's client) over an embedded apiserver with RBAC on."""
    async with embedded_api(tmp_path) as api:
        pki = ClusterPki.at(api.settings.pki_dir)
        cert, key = pki.issue_client_certificate("system:kube-controller-manager", [])
        kubeconfig = tmp_path / "controller-manager.kubeconfig"
        write_kubeconfig(kubeconfig, server=api.server, ca_pem=pki.ca_pem, client_cert_pem=cert,
                         client_key_pem=key, user="system:kube-controller-manager")
        admin = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        own = ApiClient.from_kubeconfig(kubeconfig)
        factory = InformerFactory(own)
        controller = ClusterRoleAggregationController(own, factory, ControllerManagerSettings(kubeconfig=kubeconfig))
        await factory.start()
        await factory.wait_synced()
        task = asyncio.create_task(controller.run(1), name="test-clusterrole-aggregation")
        try:
            yield admin, own
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await factory.stop()
            await admin.close()
            await own.close()


async def _has_widgets(client: ApiClient, name: str) -> bool:
    assert CLUSTER_ROLES is not None
    return WIDGETS in ((await client.get(CLUSTER_ROLES, name)).get("rules") or [])


async def test_a_labelled_role_joins_view_edit_and_admin(tmp_path: Path) -> None:
    assert CLUSTER_ROLES is not None
    async with as_controller_manager(tmp_path) as (admin, _):
        await admin.create(CLUSTER_ROLES, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                           "metadata": {"name": "widgets-view", "labels": {LABEL: "true"}},
                                           "rules": [WIDGETS]})
        for name in ("view", "edit", "admin"):
            await eventually(functools.partial(_has_widgets, admin, name), what=f"{name} gains the widgets rule")
        await admin.delete(CLUSTER_ROLES, "widgets-view")

        async def gone() -> bool:
            return not await _has_widgets(admin, "admin")
        await eventually(gone, what="admin loses the widgets rule")
