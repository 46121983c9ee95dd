"""ServiceAccount admission on pod create: default account, the kube-api-access projected volume
and its mounts, the automount opt-outs, and refusal of a missing named account."""

from __future__ import annotations

import re
from typing import Any

import pytest

from apiserver.admission_serviceaccount import MOUNT_PATH
from tests.apiserver.conftest import Api


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox"}],
                     "initContainers": [{"name": "init", "image": "busybox"}], **spec}}


async def _create(api: Api, body: dict[str, Any]) -> tuple[int, Any]:
    return await api.request("POST", "/api/v1/namespaces/default/pods", body)


async def _account(api: Api, name: str, **fields: Any) -> None:
    status, _ = await api.request("POST", "/api/v1/namespaces/default/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}, **fields})
    assert status == 201


async def test_pod_gets_default_account_and_api_access_volume(api: Api) -> None:
    status, pod = await _create(api, _pod("p"))
    assert status == 201, pod
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    [volume] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", volume["name"])
    assert volume["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    for container in (*spec["containers"], *spec["initContainers"]):
        assert container["volumeMounts"] == [{"name": volume["name"], "readOnly": True, "mountPath": MOUNT_PATH}]


@pytest.mark.parametrize("pod_says,account_says,mounted", [
    pytest.param(False, None, False, id="pod-opts-out"),
    pytest.param(None, False, False, id="account-opts-out"),
    pytest.param(True, False, True, id="pod-overrides-account"),
    pytest.param(None, None, True, id="default-mounts"),
])
async def test_automount_opt_outs(api: Api, pod_says: bool | None, account_says: bool | None,
                                  mounted: bool) -> None:
    await _account(api, "robot", **({} if account_says is None else {"automountServiceAccountToken": account_says}))
    extra = {} if pod_says is None else {"automountServiceAccountToken": pod_says}
    status, pod = await _create(api, _pod("p", serviceAccountName="robot", **extra))
    assert status == 201, pod
    volumes = [v["name"] for v in pod["spec"].get("volumes") or []]
    assert any(v.startswith("kube-api-access-") for v in volumes) is mounted
    assert bool(pod["spec"]["containers"][0].get("volumeMounts")) is mounted


async def test_missing_named_account_is_forbidden(api: Api) -> None:
    status, body = await _create(api, _pod("p", serviceAccountName="ghost"))
    assert status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('pods "p" is forbidden: error looking up service account default/ghost: '
                               'serviceaccount "ghost" not found')


async def test_existing_mount_at_the_path_is_kept(api: Api) -> None:
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    body = _pod("p", volumes=[{"name": "mine", "emptyDir": {}}])
    body["spec"]["containers"][0]["volumeMounts"] = [own]
    status, pod = await _create(api, body)
    assert status == 201, pod
    assert pod["spec"]["containers"][0]["volumeMounts"] == [own]
    assert pod["spec"]["initContainers"][0]["volumeMounts"][0]["mountPath"] == MOUNT_PATH
