"""Istio's "Authorization on HTTP traffic" task on real Docker pods with the real kubectl.

One ``kubelab up --nodes 2`` cluster; in the injected namespace ``authz``: ``httpbin`` (the
mesh harness's HTTP server, behind Service ``httpbin:8000``), a meshed client ``sleep`` running as
service account ``sleep`` and a meshed client ``curl`` running as ``default``. The task's steps:

1. no policy: both clients get 200;
2. ``allow-nothing`` (``spec: {}``) in the namespace: every request gets 403 ``RBAC: access denied``
   and the server sidecar's access log names ``rbac_access_denied_matched_policy[none]``;
3. ``httpbin-viewer``: ALLOW ``GET`` to ``app=httpbin`` from ``cluster.local/ns/authz/sa/sleep``:
   ``sleep``'s GET gets 200, its POST and ``curl``'s GET stay 403.

Requests run inside the client pods, so they cross the client sidecar (mTLS with the client's
SPIFFE identity) and the server sidecar (where the policy is enforced).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e.mesh_harness import (
    SERVER_PY,
    WAIT,
    MeshCluster,
    client_pod,
    mesh_cluster,
    namespace,
    python_deployment,
    service,
    service_account,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "authz"

REQUEST_PY = r"""
import json, sys, urllib.error, urllib.request
method = sys.argv[1]
request = urllib.request.Request("http://httpbin:8000/get", method=method, data=b"x" if method == "POST" else None)
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(json.dumps([answer.status, answer.read().decode().strip()]))
except urllib.error.HTTPError as exc:
    print(json.dumps([exc.code, exc.read().decode().strip()]))
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[MeshCluster]:
    with mesh_cluster(tmp_path_factory.mktemp("mesh-authz"), docker_client) as m:
        m.apply(
            namespace(NS), service_account("sleep", NS),
            python_deployment("httpbin", NS, SERVER_PY, labels={"app": "httpbin"}, env={"VERSION": "httpbin"}),
            service("httpbin", NS, 8000, 8080),
            client_pod("sleep", NS, account="sleep"),
            client_pod("curl", NS),
        )
        yield m


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def _request(mesh: MeshCluster, pod: str, method: str = "GET") -> tuple[int, str]:
    status, body = json.loads(mesh.python(pod, NS, REQUEST_PY, method))
    return int(status), str(body)


def _until(mesh: MeshCluster, pod: str, method: str, status: int) -> tuple[int, str]:
    """Policies reach the sidecar asynchronously: wait until ``pod``'s request gets ``status``."""
    def answered() -> tuple[int, str] | None:
        answer = _request(mesh, pod, method)
        return answer if answer[0] == status else None
    return wait_for(answered, WAIT, f"{method} from {pod} to get {status}")


def test_authorization_on_http_traffic(mesh: MeshCluster) -> None:
    server = mesh.wait_ready(NS, "app=httpbin")[0]
    mesh.wait_ready(NS, "app=sleep")
    mesh.wait_ready(NS, "app=curl")
    mesh.wait_synced(["sleep", "curl", server["metadata"]["name"]])
    assert _request(mesh, "sleep") == (200, "httpbin")
    assert _request(mesh, "curl") == (200, "httpbin")

    mesh.apply(_policy("allow-nothing", {}))
    assert _until(mesh, "sleep", "GET", 403) == (403, "RBAC: access denied")
    assert _request(mesh, "curl") == (403, "RBAC: access denied")

    def logged() -> str | None:
        logs = str(mesh.kubectl("logs", server["metadata"]["name"], "-n", NS, "-c", "istio-proxy").stdout)
        line = next((ln for ln in logs.splitlines() if "rbac_access_denied_matched_policy[none]" in ln), None)
        return line
    line = wait_for(logged, WAIT, "the denial in httpbin's access log")
    assert '"GET /get HTTP/1.1" 403 - rbac_access_denied_matched_policy[none]' in line, line

    mesh.apply(_policy("httpbin-viewer", {
        "selector": {"matchLabels": {"app": "httpbin"}}, "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [f"cluster.local/ns/{NS}/sa/sleep"]}}],
                   "to": [{"operation": {"methods": ["GET"]}}]}]}))
    assert _until(mesh, "sleep", "GET", 200) == (200, "httpbin")
    assert _request(mesh, "sleep", "POST") == (403, "RBAC: access denied")
    assert _request(mesh, "curl") == (403, "RBAC: access denied")

    # Invalid policies are refused by meshd's validating webhook, as Istio refuses them.
    refused = mesh.kubectl("apply", "-f", "-", check=False,
                           input=json.dumps(_policy("deny-nothing", {"action": "DENY"})))
    assert refused.returncode != 0
    assert "DENY action without `rules` is meaningless" in refused.stderr, refused.stderr
