"""A kopf operator that runs inside the cluster: it answers each ``Greeting`` in its status.

Packaged into an app image by ``tests/e2e/test_incluster_clients_docker.py`` and run as a
Deployment (``python3 -m kopf run --standalone --namespace NS /app/greeter.py``) under a
ServiceAccount bound to a Role. It has no kubeconfig: kopf logs in through the official client's
``config.load_incluster_config()`` (the pod's projected token, ``ca.crt`` and
``KUBERNETES_SERVICE_HOST/PORT``). The create handler writes ``status.greeting`` (through the
CRD's ``/status`` subresource), names the pod that handled it and posts an Event.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

GROUP = "incluster.kopf.lab.example.com"
VERSION = "v1"
PLURAL = "greetings"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 30
    settings.watching.client_timeout = 40


@kopf.on.create(GROUP, VERSION, PLURAL)
def greet(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    who = str(spec.get("name") or "world")
    patch.status["greeting"] = f"hello, {who}"
    patch.status["handledBy"] = os.environ.get("HOSTNAME", "")
    kopf.info(body, reason="Greeted", message=f"greeted {who}")
