"""kopf's admission webhooks against kubelab, on SQLite and on a real etcd.

The operator (:mod:`tests.e2e.kopf_operators.admission`) runs as users run one: ``kopf run
--standalone --all-namespaces`` in a subprocess, logged in from the apiserver's kubeconfig. It
serves its ``@kopf.on.mutate``/``@kopf.on.validate`` handlers with kopf's own ``WebhookServer``
on 127.0.0.1 (a serving certificate from a CA of this test's own) and creates the
Validating/MutatingWebhookConfiguration ``auto.kopf.dev`` itself. The tests create ConfigMaps and
custom ``Gizmo`` objects with the official Python client and kubectl, and check that they are
mutated, denied and warned about as the handlers say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer, kubectl
from machinery.pki import ensure_cluster_pki, write_private_file
from tests.e2e.kopf_operators import admission
from tests.e2e.pyclient import client, new_client

GROUP, VERSION, PLURAL = admission.GROUP, admission.VERSION, admission.PLURAL
DEADLINE_SECONDS = 90.0
T = TypeVar("T")

GIZMO_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gizmo", "kind": "Gizmo"},
        "versions": [{"name": VERSION, "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "size": {"type": "integer"}, "owner": {"type": "string"}}}},
        }}}],
    },
}


def eventually(probe: Callable[[], T | None], what: str, log: Callable[[], str]) -> T:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; operator log:\n{log()[-4000:]}")
        time.sleep(0.2)  # polling interval


class Operator:
    """``kopf run`` in a subprocess, logging to a file that failures print."""

    def __init__(self, server: RunningApiServer, workdir: Path) -> None:
        pki = ensure_cluster_pki(workdir / "webhook-ca")
        cert, key = pki.issue_serving_certificate(["127.0.0.1"])
        write_private_file(workdir / "webhook.crt", cert, mode=0o644)
        write_private_file(workdir / "webhook.key", key)
        write_private_file(workdir / "webhook-ca.crt", pki.ca_pem, mode=0o644)
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "PYTHONPATH": str(Path.cwd()),
               "KOPF_LAB_WEBHOOK_CERT": str(workdir / "webhook.crt"),
               "KOPF_LAB_WEBHOOK_KEY": str(workdir / "webhook.key"),
               "KOPF_LAB_WEBHOOK_CA": str(workdir / "webhook-ca.crt")}
        self.log_path = workdir / "operator.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "--verbose",
             admission.__file__], stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        self.process.terminate()
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self._log.close()
        return code


@pytest.fixture(scope="module")
def kopf_env(module_cluster: RunningApiServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Any, str, Operator]]:
    """The Gizmo CRD established, a namespace, and the operator's webhooks in effect."""
    api = new_client(module_cluster)
    ext = client.ApiextensionsV1Api(api)
    core = client.CoreV1Api(api)
    ext.create_custom_resource_definition(GIZMO_CRD)
    namespace = f"kopf-hooks-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    operator = Operator(module_cluster, tmp_path_factory.mktemp("kopf-webhooks"))
    try:
        def refused() -> bool | None:
            name = f"bad-probe-{uuid.uuid4().hex[:6]}"
            try:
                core.create_namespaced_config_map(namespace, client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=name, labels=admission.SELECTED)))
            except ApiException as exc:
                return True if exc.status == 400 else None
            core.delete_namespaced_config_map(name, namespace)
            return None

        eventually(refused, "kopf's webhooks to take effect", operator.log)
        yield api, namespace, operator
    finally:
        code = operator.stop()
        api.close()
        log = operator.log()
        assert "Traceback" not in log, log[-4000:]
        assert code == 0, log[-4000:]


def _configmap(name: str, labels: dict[str, str] | None = None) -> Any:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data={"k": "v"})


def test_kopf_manages_its_webhook_configurations(kopf_env: tuple[Any, str, Operator]) -> None:
    api, _, _ = kopf_env
    admission_api = client.AdmissionregistrationV1Api(api)
    validating = admission_api.read_validating_webhook_configuration("auto.kopf.dev")
    mutating = admission_api.read_mutating_webhook_configuration("auto.kopf.dev")
    assert {w.name for w in validating.webhooks} == {"check-configmaps.auto.kopf.dev", "check-gizmos.auto.kopf.dev"}
    assert {w.name for w in mutating.webhooks} == {"label-configmaps.auto.kopf.dev", "own-gizmos.auto.kopf.dev"}
    hook = next(w for w in validating.webhooks if w.name == "check-configmaps.auto.kopf.dev")
    assert hook.client_config.url.startswith("https://127.0.0.1:")
    assert hook.client_config.ca_bundle and hook.match_policy == "Equivalent"


def test_configmaps_are_mutated_and_denied(kopf_env: tuple[Any, str, Operator]) -> None:
    api, namespace, _ = kopf_env
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(namespace, _configmap("labelled", dict(admission.SELECTED)))
    assert created.metadata.labels == {**admission.SELECTED, "mutated-by": "kopf"}
    assert core.read_namespaced_config_map("labelled", namespace).metadata.labels["mutated-by"] == "kopf"
    # Outside the handlers' label selector nothing is called.
    plain = core.create_namespaced_config_map(namespace, _configmap("bad-but-unselected"))
    assert plain.metadata.labels is None
    with pytest.raises(ApiException) as denied:
        core.create_namespaced_config_map(namespace, _configmap("bad-selected", dict(admission.SELECTED)))
    assert denied.value.status == 400
    body = json.loads(denied.value.body or "{}")
    assert body["message"] == ('admission webhook "check-configmaps.auto.kopf.dev" denied the request: '
                               "configmaps named bad-* are refused by kopf")


def test_warning_reaches_kubectl(kopf_env: tuple[Any, str, Operator], module_cluster: RunningApiServer,
                                 tmp_path: Path) -> None:
    _, namespace, _ = kopf_env
    manifest = tmp_path / "warn.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "warn-me", "namespace": namespace, "labels": dict(admission.SELECTED)}}))
    result = kubectl("create", "-f", str(manifest), kubeconfig=module_cluster.kubeconfig)
    assert result.stderr == "Warning: kopf warns about warn-* configmaps\n"
    assert result.stdout == "configmap/warn-me created\n"


def test_custom_resources_are_mutated_and_denied(kopf_env: tuple[Any, str, Operator]) -> None:
    api, namespace, _ = kopf_env
    custom = client.CustomObjectsApi(api)

    def gizmo(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gizmo", "metadata": {"name": name}, "spec": spec}

    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gizmo("small", size=3))
    assert created["spec"] == {"size": 3, "owner": "kopf"}
    kept = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                  gizmo("owned", size=1, owner="me"))
    assert kept["spec"]["owner"] == "me"
    with pytest.raises(ApiException) as denied:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gizmo("huge", size=11))
    assert denied.value.status == 422
    assert json.loads(denied.value.body or "{}")["message"] == (
        'admission webhook "check-gizmos.auto.kopf.dev" denied the request: gizmos are at most 10 in size')
    with pytest.raises(ApiException) as denied:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "small", {"spec": {"size": 12}})
    assert denied.value.status == 422
    assert custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "small")["spec"]["size"] == 3
