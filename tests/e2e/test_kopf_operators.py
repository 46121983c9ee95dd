"""kopf (from PyPI) runs an example operator against kubelab, on SQLite and on a real etcd.

The operator (:mod:`tests.e2e.kopf_operators.labtask`) runs as users run one: ``kopf run
--standalone --namespace NS`` in a subprocess, logged in from the apiserver's kubeconfig
(client certificates), watching ``LabTask`` custom resources. The tests drive the objects with the
official Python client and assert what the handlers leave behind: handler results and patches in
``status`` (through the ``/status`` subresource), kopf's finalizer holding a deleted object until
the delete handler succeeds, field and update handlers, timer ticks and daemon heartbeats, and an
Event posted by a handler (``kopf.info``). Without ``--standalone`` kopf keeps its peering
keep-alives in a ``KopfPeering`` (merge patches of a CR's status without a subresource).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer
from tests.e2e.kopf_operators import labtask
from tests.e2e.pyclient import client, new_client

GROUP, VERSION, PLURAL = labtask.GROUP, labtask.VERSION, labtask.PLURAL
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
DEADLINE_SECONDS = 60.0
OPERATOR = Path(labtask.__file__)

T = TypeVar("T")

LABTASK_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "labtask", "kind": "LabTask", "shortNames": ["lt"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "string", "enum": ["small", "large"]},
                    }},
                    # kopf keeps handler results (and, optionally, its progress) in status.
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


PEERING_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Namespaced",
        "names": {"plural": "kopfpeerings", "singular": "kopfpeering", "kind": "KopfPeering"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }}}],
    },
}
"""kopf's peering resource as its documentation declares it (no status subresource)."""


def eventually(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE_SECONDS) -> T:
    """Poll ``probe`` until it returns something other than None (or fail naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Operator:
    """``kopf run`` in a subprocess, logging to a file that failures print."""

    def __init__(self, server: RunningApiServer, namespace: str, log_path: Path, *, peering: str | None = None
                 ) -> None:
        self.log_path = log_path
        env = {**os.environ, "KUBECONFIG": str(server.kubeconfig), "PYTHONPATH": str(Path.cwd())}
        self._log = log_path.open("w")
        coordination = ["--peering", peering] if peering else ["--standalone"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", *coordination, "--namespace", namespace, "--verbose",
             str(OPERATOR)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

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
def operator_env(
    module_cluster: RunningApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str, Operator]]:
    """The LabTask CRD established, a namespace, and the operator running in it."""
    api = new_client(module_cluster)
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(LABTASK_CRD)

    def established() -> bool | None:
        crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        ok = any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
        return True if ok else None

    eventually(established, "the LabTask CRD to be Established")
    namespace = f"kopf-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    operator = Operator(module_cluster, namespace, tmp_path_factory.mktemp("kopf") / "operator.log")
    try:
        yield api, namespace, operator
    finally:
        code = operator.stop()
        api.close()
        log = operator.log()
        assert "Traceback" not in log, log[-4000:]
        assert code == 0, log[-4000:]


@pytest.fixture
def custom(operator_env: tuple[Any, str, Operator]) -> Any:
    return client.CustomObjectsApi(operator_env[0])


@pytest.fixture
def namespace(operator_env: tuple[Any, str, Operator]) -> str:
    return operator_env[1]


@pytest.fixture
def operator(operator_env: tuple[Any, str, Operator]) -> Operator:
    return operator_env[2]


def create_task(custom: Any, namespace: str, size: str = "small") -> str:
    name = f"task-{uuid.uuid4().hex[:8]}"
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LabTask", "metadata": {"name": name}, "spec": {"size": size}})
    return name


def status_when(custom: Any, namespace: str, name: str, ready: Callable[[dict[str, Any]], bool], what: str,
                operator: Operator) -> dict[str, Any]:
    """The object once ``ready(status)`` holds; the operator's log on timeout."""
    def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return obj if ready(obj.get("status") or {}) else None

    try:
        return eventually(probe, what)
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}; operator log:\n{operator.log()[-4000:]}") from None


def test_create_handler_sets_status_and_finalizer(custom: Any, namespace: str, operator: Operator) -> None:
    name = create_task(custom, namespace, "large")
    obj = status_when(custom, namespace, name, lambda s: "create_task" in s and s.get("phase") == "Created",
                      "the create handler's result", operator)
    assert obj["status"]["create_task"] == {"message": "created a large task"}
    assert FINALIZER in obj["metadata"]["finalizers"]
    # Status went through /status: the main resource's generation counts the spec alone.
    assert obj["metadata"]["generation"] == 1


LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"
"""kopf's record of the spec it last handled, written when a handling cycle is over."""


def test_update_and_field_handlers(custom: Any, namespace: str, operator: Operator) -> None:
    name = create_task(custom, namespace, "small")
    status_when(custom, namespace, name, lambda s: "create_task" in s, "the create handler", operator)

    def handled(marker: str) -> Callable[[], bool | None]:
        def probe() -> bool | None:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            return True if marker in ((obj["metadata"].get("annotations") or {}).get(LAST_HANDLED) or "") else None
        return probe

    # Changed only once kopf has recorded the creation as handled: a change that lands between its
    # handlers' status patch and that record is not an update of the handled spec to kopf.
    eventually(handled('"small"'), "kopf's record of the handled creation")
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": {"size": "large"}})
    # kopf's default lifecycle runs one handler per cycle, each cycle with its own patch: the update
    # counter can move before the field handler has run, so the wait names both results.
    obj = status_when(custom, namespace, name,
                      lambda s: s.get("updates") == 1 and (s.get("sizeChange") or {}).get("new") == "large",
                      "the update and field handlers", operator)
    assert obj["status"]["sizeChange"] == {"old": "small", "new": "large"}
    eventually(handled('"large"'), "kopf's record of the handled update")
    # A label change is an update too, but not of spec.size: the field handler stays quiet.
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                          {"metadata": {"labels": {"touched": "yes"}}})
    status_when(custom, namespace, name, lambda s: s.get("updates") == 2, "the second update", operator)
    eventually(handled('"touched"'), "kopf's record of the handled label change")
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert obj["status"]["sizeChange"] == {"old": "small", "new": "large"}


def test_timer_and_daemon_keep_counting(custom: Any, namespace: str, operator: Operator) -> None:
    name = create_task(custom, namespace)
    first = status_when(custom, namespace, name, lambda s: s.get("ticks", 0) >= 1 and s.get("beats", 0) >= 1,
                        "a first timer tick and daemon beat", operator)["status"]
    later = status_when(custom, namespace, name,
                        lambda s: s.get("ticks", 0) >= first["ticks"] + 3 and s.get("beats", 0) >= first["beats"] + 3,
                        "three more ticks and beats", operator)["status"]
    assert later["ticks"] > first["ticks"] and later["beats"] > first["beats"]


def test_delete_handler_runs_before_the_finalizer_goes(custom: Any, namespace: str, operator: Operator,
                                                      operator_env: tuple[Any, str, Operator]) -> None:
    core = client.CoreV1Api(operator_env[0])
    name = create_task(custom, namespace)
    status_when(custom, namespace, name, lambda s: "create_task" in s, "the create handler", operator)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    # The first attempt of the delete handler fails on purpose: the finalizer keeps the object.
    held = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert held["metadata"]["deletionTimestamp"] and FINALIZER in held["metadata"]["finalizers"]

    def gone() -> bool | None:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            assert exc.status == 404
            return True
        return None

    eventually(gone, "the object to go once the delete handler succeeded")
    marker = core.read_namespaced_config_map(f"{name}-deleted", namespace)
    assert marker.data == {"by": "delete_task"}


def test_handler_posts_an_event(custom: Any, namespace: str, operator: Operator,
                                             operator_env: tuple[Any, str, Operator]) -> None:
    core = client.CoreV1Api(operator_env[0])
    name = create_task(custom, namespace)
    status_when(custom, namespace, name, lambda s: "create_task" in s, "the create handler", operator)

    def event() -> Any:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return next((e for e in events if e.reason == "TaskCreated"), None)

    found = eventually(event, "the event posted by the create handler")
    assert found.type == "Normal" and found.message == "accepted a small task"
    assert found.involved_object.kind == "LabTask" and found.involved_object.api_version == f"{GROUP}/{VERSION}"
    assert found.involved_object.namespace == namespace and found.involved_object.uid


def test_peering_keepalives_and_clean_exit(module_cluster: RunningApiServer, tmp_path: Path) -> None:
    """Without ``--standalone`` kopf announces itself in a KopfPeering's status and removes itself on exit."""
    api = new_client(module_cluster)
    try:
        ext = client.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(PEERING_CRD)

        def established() -> bool | None:
            crd = ext.read_custom_resource_definition("kopfpeerings.kopf.dev")
            return True if any(c.type == "Established" and c.status == "True"
                               for c in crd.status.conditions or []) else None

        eventually(established, "the KopfPeering CRD to be Established")
        namespace = f"kopf-peering-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", {
            "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "lab"}})

        def peers() -> dict[str, Any]:
            obj = custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", "lab")
            found: dict[str, Any] = obj.get("status") or {}
            return found

        operator = Operator(module_cluster, namespace, tmp_path / "operator.log", peering="lab")
        try:
            announced = eventually(lambda: peers() or None, "the operator's keep-alive in the peering")
        finally:
            code = operator.stop()
        assert code == 0, operator.log()[-4000:]
        [(identity, info)] = announced.items()
        assert info["priority"] == 0 and info["lifetime"] > 0 and info["lastseen"]
        eventually(lambda: True if identity not in peers() else None, "the operator to leave the peering")
    finally:
        api.close()
