"""Identity with the real kubectl, every pinned version (1.27 … 1.33) on SQLite and etcd:
``kubectl auth whoami`` (1.27 asks v1beta1, later ones v1; 1.32+ send protobuf), ``--as`` /
``--as-group`` take effect, ``kubectl create token`` issues tokens (duration, audience, bound to a
pod) that kubectl can then authenticate with."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab.testing import RunningApiServer, kubectl, kubectl_versions
from tests.e2e.conftest import STORES, start_cluster

pytestmark = pytest.mark.kubectl

VERSIONS = [pytest.param(v, id=v) for v in kubectl_versions()] + [pytest.param(None, id="kubectl")]


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    with start_cluster(request, str(request.param), tmp_path_factory.mktemp("identity")) as running:
        kubectl("create", "serviceaccount", "robot", kubeconfig=running.kubeconfig)
        kubectl("create", "rolebinding", "robot-view", "--clusterrole", "view", "--serviceaccount", "default:robot",
                kubeconfig=running.kubeconfig)
        kubectl("run", "bound", "--image", "busybox", "--overrides",
                '{"spec": {"serviceAccountName": "robot"}}', kubeconfig=running.kubeconfig)
        yield running


def _whoami(server: RunningApiServer, version: str | None, *args: str) -> dict[str, Any]:
    out = kubectl("auth", "whoami", "-o", "json", *args, kubeconfig=server.kubeconfig, version=version).stdout
    review = json.loads(out)
    assert review["kind"] == "SelfSubjectReview"
    user: dict[str, Any] = review["status"]["userInfo"]
    return user


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _token_kubeconfig(server: RunningApiServer, token: str, path: Path) -> Path:
    """A kubeconfig that trusts the cluster CA and presents only ``token``."""
    ca = base64.b64encode((server.state_dir / "pki" / "ca.crt").read_bytes()).decode()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": server.url, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": "default"}}],
    }))
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_whoami_shows_the_admin(server: RunningApiServer, version: str | None) -> None:
    assert _whoami(server, version) == {"username": "kubernetes-admin",
                                        "groups": ["system:masters", "system:authenticated"]}
    table = kubectl("auth", "whoami", kubeconfig=server.kubeconfig, version=version).stdout
    assert "kubernetes-admin" in table and "system:masters" in table


@pytest.mark.parametrize("version", VERSIONS)
def test_as_takes_effect(server: RunningApiServer, version: str | None) -> None:
    user = _whoami(server, version, "--as", "jane", "--as-group", "devs", "--as-group", "qa")
    assert user == {"username": "jane", "groups": ["devs", "qa", "system:authenticated"]}
    user = _whoami(server, version, "--as", "system:serviceaccount:default:robot")
    assert user["username"] == "system:serviceaccount:default:robot"
    assert user["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]


@pytest.mark.parametrize("version", VERSIONS)
def test_create_token_and_authenticate_with_it(server: RunningApiServer, version: str | None,
                                              tmp_path: Path) -> None:
    token = kubectl("create", "token", "robot", kubeconfig=server.kubeconfig, version=version).stdout.strip()
    claims = _claims(token)
    assert claims["sub"] == "system:serviceaccount:default:robot" and claims["exp"] - claims["iat"] == 3600
    config = _token_kubeconfig(server, token, tmp_path / "sa.kubeconfig")
    user = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=config, version=version).stdout)
    assert user["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"
    listed = kubectl("get", "serviceaccounts", "-o", "name", kubeconfig=config, version=version).stdout
    assert "serviceaccount/robot" in listed.split()  # the token's account may view (its RoleBinding)
    denied = kubectl("get", "nodes", kubeconfig=config, version=version, check=False)
    assert denied.returncode != 0 and 'User "system:serviceaccount:default:robot" cannot list' in denied.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_create_token_with_duration_audience_and_pod(server: RunningApiServer, version: str | None,
                                                    tmp_path: Path) -> None:
    token = kubectl("create", "token", "robot", "--duration", "15m", "--audience", "istio-ca",
                    "--bound-object-kind", "Pod", "--bound-object-name", "bound",
                    kubeconfig=server.kubeconfig, version=version).stdout.strip()
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] == 900 and claims["aud"] == ["istio-ca"]
    assert claims["kubernetes.io"]["pod"]["name"] == "bound"
    # Not for the apiserver's audience: kubectl gets Kubernetes' 401.
    config = _token_kubeconfig(server, token, tmp_path / "istio.kubeconfig")
    result = kubectl("get", "pods", kubeconfig=config, version=version, check=False)
    assert result.returncode != 0
    assert "You must be logged in to the server" in result.stderr or "Unauthorized" in result.stderr


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_create_token_refusals(server: RunningApiServer, version: str | None) -> None:
    result = kubectl("create", "token", "ghost", kubeconfig=server.kubeconfig, version=version, check=False)
    assert result.returncode != 0 and 'serviceaccounts "ghost" not found' in result.stderr
    result = kubectl("create", "token", "robot", "--duration", "1m", kubeconfig=server.kubeconfig,
                     version=version, check=False)
    assert result.returncode != 0 and "may not specify a duration less than 10 minutes" in result.stderr
