"""The real kubectl (the default one and every pinned version) against admission webhooks.

A webhook served by this test process on 127.0.0.1 with a CA of its own (envtest's pattern),
configured with ``kubectl apply``: a validating webhook denies ConfigMaps named ``bad-*`` or
labelled ``verdict=bad`` (no reason) and ``verdict=forbidden`` (403 Forbidden) and warns about
``warn-*``; a mutating webhook labels every ConfigMap. kubectl must print the denials and the
warnings exactly as it does against Kubernetes, and show the label in ``kubectl get -o yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelab.testing import RunningApiServer, kubectl, kubectl_versions
from tests.apiserver.webhooks.hookserver import HookServer, answer, hook_server_thread

pytestmark = pytest.mark.kubectl

Obj = dict[str, Any]
VERSIONS = [pytest.param(None, id="kubectl"), *(pytest.param(v, id=v) for v in kubectl_versions())]
DENIED = 'admission webhook "names.kubelab.test" denied the request'


async def _validate(review: Obj) -> Obj:
    name = review["request"]["name"]
    verdict = (review["request"]["object"]["metadata"].get("labels") or {}).get("verdict")
    if name.startswith("bad-") or verdict == "bad":
        return answer(review, allowed=False, status={"message": "bad configmaps are refused"})
    if verdict == "forbidden":
        return answer(review, allowed=False, status={"code": 403, "reason": "Forbidden",
                                                     "message": "forbidden configmaps are refused"})
    if name.startswith("warn-"):
        return answer(review, warnings=["configmaps named warn-* are discouraged", "second warning"])
    return answer(review)


async def _mutate(review: Obj) -> Obj:
    labels = review["request"]["object"]["metadata"].get("labels")
    if labels is None:
        return answer(review, patch=[{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
    return answer(review, patch=[{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])


def _configuration(kind: str, hook_name: str, url: str, ca_bundle: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": hook_name.split(".")[0]},
        "webhooks": [{"name": hook_name, "clientConfig": {"url": url, "caBundle": ca_bundle},
                      "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
                      "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["configmaps"]}]}],
    })


@pytest.fixture(scope="module")
def hooked(module_cluster: RunningApiServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[RunningApiServer, HookServer]]:
    """The module's apiserver with both webhooks configured (through kubectl) and in effect."""
    workdir = tmp_path_factory.mktemp("webhooks-kubectl")
    with hook_server_thread(workdir / "hook-pki") as hooks:
        hooks.behaviours["/validate"] = _validate
        hooks.behaviours["/mutate"] = _mutate
        for kind, name, path in (("ValidatingWebhookConfiguration", "names.kubelab.test", "/validate"),
                                 ("MutatingWebhookConfiguration", "labels.kubelab.test", "/mutate")):
            config = workdir / f"{path.strip('/')}.yaml"
            config.write_text(_configuration(kind, name, hooks.url(path), hooks.ca_bundle))
            kubectl("apply", "-f", str(config), kubeconfig=module_cluster.kubeconfig)
        deadline = time.monotonic() + 60
        attempt = 0
        while not (hooks.reviews.get("/validate") and hooks.reviews.get("/mutate")):
            assert time.monotonic() < deadline, "the webhook configurations never took effect"
            kubectl("create", "configmap", f"probe-{attempt}", kubeconfig=module_cluster.kubeconfig)
            attempt += 1
            time.sleep(0.1)  # polling interval while the configurations reach the watch cache
        yield module_cluster, hooks


def _namespace(server: RunningApiServer, version: str | None) -> str:
    name = f"hooks-{version or 'default'}".replace(".", "-")
    kubectl("create", "namespace", name, kubeconfig=server.kubeconfig)
    return name


@pytest.mark.parametrize("version", VERSIONS)
def test_denial_warning_and_mutation_as_kubernetes_prints_them(hooked: tuple[RunningApiServer, HookServer],
                                                               version: str | None, tmp_path: Path) -> None:
    server, _ = hooked
    ns = _namespace(server, version)

    def run(*args: str) -> Any:
        return kubectl(*args, "-n", ns, kubeconfig=server.kubeconfig, version=version, check=False)

    # kubectl's generators word their own error around the server's message.
    denied = run("create", "configmap", "bad-one", "--from-literal=a=b")
    assert denied.returncode == 1
    assert denied.stderr == f"error: failed to create configmap: {DENIED}: bad configmaps are refused\n"
    warned = run("create", "configmap", "warn-one")
    assert warned.returncode == 0, warned.stderr
    assert warned.stdout == "configmap/warn-one created\n"
    assert warned.stderr == "Warning: configmaps named warn-* are discouraged\nWarning: second warning\n"

    manifest = tmp_path / "cm.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "plain", "labels": {"app": "lab"}},
                                        "data": {"k": "v"}}))
    applied = run("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    shown = run("get", "configmap", "plain", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["metadata"]["labels"] == {"app": "lab", "mutated": "yes"}
    assert "    mutated: \"yes\"\n" in shown.stdout

    # A Status error as such: "Error from server[ (Reason)]: <message>".
    labelled = run("label", "configmap", "plain", "verdict=bad")
    assert labelled.returncode == 1
    assert labelled.stderr == f"Error from server: {DENIED}: bad configmaps are refused\n"
    forbidden = run("label", "configmap", "plain", "verdict=forbidden")
    assert forbidden.returncode == 1
    assert forbidden.stderr == f"Error from server (Forbidden): {DENIED}: forbidden configmaps are refused\n"
    kept = json.loads(run("get", "configmap", "plain", "-o", "json").stdout)
    assert "verdict" not in kept["metadata"]["labels"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad-applied"}}))
    refused = run("apply", "-f", str(bad))
    assert refused.returncode == 1
    assert refused.stderr == f'Error from server: error when creating "{bad}": {DENIED}: bad configmaps are refused\n'
    missing = run("get", "configmap", "bad-applied", "-o", "json")
    assert missing.returncode == 1 and "NotFound" in missing.stderr
    listed = json.loads(run("get", "configmaps", "-o", "json").stdout)
    assert {item["metadata"]["name"] for item in listed["items"]} >= {"plain", "warn-one"}
