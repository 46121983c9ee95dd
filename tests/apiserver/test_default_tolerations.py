"""DefaultTolerationSeconds admission: new pods tolerate not-ready/unreachable NoExecute for 300 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apiserver.admission_tolerations import add_default_tolerations
from machinery.client import ApiClient
from machinery.resources import PODS
from tests.apiserver.conftest import embedded_api

NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
               "tolerationSeconds": 300}


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param([], [NOT_READY, UNREACHABLE], id="none"),
    pytest.param([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 10}],
                 [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 10}, UNREACHABLE], id="own-not-ready-kept"),
    pytest.param([{"operator": "Exists"}], [{"operator": "Exists"}], id="tolerates-everything"),
    pytest.param([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}],
                 [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"},
                  NOT_READY, UNREACHABLE], id="noschedule-is-not-enough"),
])
def test_default_tolerations(given: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    pod: dict[str, Any] = {"spec": {"tolerations": given} if given else {}}
    add_default_tolerations(pod)
    assert pod["spec"]["tolerations"] == expected


async def test_created_pods_get_them_and_updates_keep_them(tmp_path: Path) -> None:
    async with embedded_api(tmp_path) as api:
        client = ApiClient.from_kubeconfig(api.settings.kubeconfig_path)
        try:
            pod = await client.create(PODS, {"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "c", "image": "busybox"}]}}, namespace="default")
            assert pod["spec"]["tolerations"] == [NOT_READY, UNREACHABLE]
            pod = await client.patch(PODS, "p", {"metadata": {"labels": {"a": "b"}}}, namespace="default")
            assert pod["spec"]["tolerations"] == [NOT_READY, UNREACHABLE]
        finally:
            await client.close()
