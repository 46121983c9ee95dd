"""The sidecar injector: a pod's AdmissionReview in, the same review with a JSONPatch response out.

Called by :mod:`meshd.control.webhooks` (the HTTPS server on port 15017, which meshd owns: its
certificate for ``istiod.istio-system.svc`` is signed by the mesh root, and the root is the
``caBundle`` of the MutatingWebhookConfiguration ``istio-sidecar-injector``) for every request to
``/inject``. The server decodes the JSON body, calls :func:`handle_admission_review` and writes
its answer back; it never looks inside.

Contract kept by this module:

* ``handle_admission_review(review, settings)`` takes the decoded ``admission.k8s.io/v1``
  AdmissionReview (a dict) and the process's :class:`meshd.control.settings.MeshdSettings`, and
  returns the AdmissionReview to send back (``response.uid`` = ``request.uid``; ``allowed``;
  ``patchType: JSONPatch`` and a base64 ``patch`` when the pod changes).
* It is synchronous and pure (no I/O); it must not raise: a pod it cannot inject is answered
  with ``allowed: false`` and a message, as the webhook's ``failurePolicy: Fail`` expects.

This version allows every pod unchanged (the injection itself lives here when written).
"""

from __future__ import annotations

from typing import Any

from meshd.control.settings import MeshdSettings

__all__ = ["handle_admission_review"]


def handle_admission_review(review: dict[str, Any], settings: MeshdSettings) -> dict[str, Any]:
    """The AdmissionReview answering ``review`` (allowed, no patch)."""
    request = review.get("request") or {}
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": {"uid": request.get("uid", ""), "allowed": True},
    }
