"""A kopf operator for ``LabTask`` objects (``labtasks.kopf.lab.example.com``), in the shape of kopf's examples.

Run by ``tests/e2e/test_kopf_operators.py`` as ``kopf run --standalone --namespace NS labtask.py``
with ``KUBECONFIG`` pointing at a kubelab apiserver. Every handler leaves a mark that the test
reads back through the API:

- ``on.create``: returns ``{"message": ...}`` (kopf stores it in ``status.create_task``) and sets
  ``status.phase`` through its patch (sent to ``/status``: the CRD has the subresource);
- ``on.update`` counts updates in ``status.updates``; ``on.field("spec.size")`` records the
  change in ``status.sizeChange``; the create handler also posts an Event (``TaskCreated``);
- ``on.delete`` fails once with a temporary error (so kopf's finalizer visibly holds the object
  for a retry delay), then creates the ConfigMap ``<name>-deleted`` and lets the object go;
- a timer counts ``status.ticks`` every 0.5 s; a thread daemon counts ``status.beats`` by
  patching ``/status`` itself with the official client, until kopf stops it.
"""

from __future__ import annotations

import threading
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP = "kopf.lab.example.com"
VERSION = "v1"
PLURAL = "labtasks"

_api: dict[str, Any] = {}
_lock = threading.Lock()


def _custom() -> Any:
    with _lock:
        if "custom" not in _api:
            new_client: Any = config.new_client_from_config
            api_client = new_client()  # $KUBECONFIG, as kopf's own login reads it
            _api["custom"] = client.CustomObjectsApi(api_client)
            _api["core"] = client.CoreV1Api(api_client)
        return _api["custom"]


def _core() -> Any:
    _custom()
    return _api["core"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 30
    settings.watching.client_timeout = 40


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_task(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> dict[str, str]:
    patch.status["phase"] = "Created"
    kopf.info(body, reason="TaskCreated", message=f"accepted a {spec.get('size', 'small')} task")
    return {"message": f"created a {spec.get('size', 'small')} task"}


@kopf.on.update(GROUP, VERSION, PLURAL)
def update_task(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    patch.status["updates"] = int(status.get("updates") or 0) + 1


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.size")
def size_changed(old: Any, new: Any, patch: kopf.Patch, **_: Any) -> None:
    patch.status["sizeChange"] = {"old": old, "new": new}


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_task(name: str, namespace: str | None, retry: int, **_: Any) -> None:
    if retry == 0:
        raise kopf.TemporaryError("not yet: the finalizer holds the object for one retry", delay=3.0)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"{name}-deleted"), data={"by": "delete_task"})
    _core().create_namespaced_config_map(namespace, body)


@kopf.timer(GROUP, VERSION, PLURAL, interval=0.5)
def tick(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    patch.status["ticks"] = int(status.get("ticks") or 0) + 1


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
def heartbeat(stopped: kopf.DaemonStopped, name: str, namespace: str | None, **_: Any) -> None:
    beats = 0
    while not stopped:
        beats += 1
        try:
            _custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                            {"status": {"beats": beats}})
        except ApiException as exc:
            if exc.status == 404:  # deleted under us: kopf stops the daemon next
                return
            raise
        stopped.wait(0.5)
