"""A kopf operator with admission webhooks, served by kopf's own ``WebhookServer``.

Run by ``tests/e2e/test_kopf_webhooks.py`` as ``kopf run --standalone ... admission.py`` with
``KUBECONFIG`` pointing at a kubelab apiserver. kopf listens on 127.0.0.1 (a port it picks) with
the serving certificate named by ``KOPF_LAB_WEBHOOK_CERT``/``KOPF_LAB_WEBHOOK_KEY`` (issued by
a CA of the test's own, ``KOPF_LAB_WEBHOOK_CA``), and manages the Validating- and
MutatingWebhookConfiguration ``auto.kopf.dev`` itself. Handlers, for objects labelled
``kopf-lab: admission``:

- ConfigMaps: a mutating handler adds the label ``mutated-by: kopf``; a validating one refuses
  names starting with ``bad-`` (400) and warns about names starting with ``warn-``;
- ``Gizmo`` custom resources: a mutating handler sets ``spec.owner: kopf`` when absent; a
  validating one refuses ``spec.size`` above 10 (code 422).
"""

from __future__ import annotations

import os
from typing import Any

import kopf

GROUP = "kopf-hooks.lab.example.com"
VERSION = "v1"
PLURAL = "gizmos"
SELECTED = {"kopf-lab": "admission"}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.admission.server = kopf.WebhookServer(
        addr="127.0.0.1", host="127.0.0.1",
        certfile=os.environ["KOPF_LAB_WEBHOOK_CERT"], pkeyfile=os.environ["KOPF_LAB_WEBHOOK_KEY"],
        cafile=os.environ["KOPF_LAB_WEBHOOK_CA"])
    settings.admission.managed = "auto.kopf.dev"


@kopf.on.mutate("configmaps", id="label-configmaps", labels=SELECTED, operations=["CREATE", "UPDATE"])
def label_configmaps(patch: kopf.Patch, **_: Any) -> None:
    patch.metadata.labels["mutated-by"] = "kopf"


@kopf.on.validate("configmaps", id="check-configmaps", labels=SELECTED, operations=["CREATE", "UPDATE"])
def check_configmaps(name: str | None, warnings: list[str], **_: Any) -> None:
    if (name or "").startswith("bad-"):
        raise kopf.AdmissionError("configmaps named bad-* are refused by kopf", code=400)
    if (name or "").startswith("warn-"):
        warnings.append("kopf warns about warn-* configmaps")


@kopf.on.mutate(GROUP, VERSION, PLURAL, id="own-gizmos", operations=["CREATE", "UPDATE"])
def own_gizmos(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    if "owner" not in spec:
        patch.spec["owner"] = "kopf"


@kopf.on.validate(GROUP, VERSION, PLURAL, id="check-gizmos", operations=["CREATE", "UPDATE"])
def check_gizmos(spec: kopf.Spec, **_: Any) -> None:
    if int(spec.get("size") or 0) > 10:
        raise kopf.AdmissionError("gizmos are at most 10 in size", code=422)
