"""The sidecar injector: a pod's AdmissionReview in, the same review with a JSONPatch response out.

Called by :mod:`meshd.control.webhooks` (the HTTPS server on port 15017, which meshd owns: its
certificate for ``istiod.istio-system.svc`` is signed by the mesh root, and the root is the
``caBundle`` of the MutatingWebhookConfiguration ``istio-sidecar-injector``) for every request to
``/inject``. The server decodes the JSON body, calls :func:`handle_admission_review` and writes
its answer back; it never looks inside. ``kubelab mesh inject`` calls :func:`inject_manifest`
(``istioctl kube-inject``); the control plane applies :func:`webhook_configuration` at start.

Contract kept by this module:

* ``handle_admission_review(review, settings)`` takes the decoded ``admission.k8s.io/v1``
  AdmissionReview (a dict) and the process's :class:`meshd.control.settings.MeshdSettings`, and
  returns the AdmissionReview to send back (``response.uid`` = ``request.uid``; ``allowed``;
  ``patchType: JSONPatch`` and a base64 ``patch`` when the pod changes).
* It is synchronous and pure (no I/O); it must not raise: a pod it cannot inject is answered
  with ``allowed: false`` and a message, as the webhook's ``failurePolicy: Fail`` expects.

Selection is Istio's: the webhook configuration sends pods of namespaces labelled
``istio-injection=enabled`` (unless the pod is labelled ``sidecar.istio.io/inject: "false"``) and
pods labelled ``sidecar.istio.io/inject: "true"`` in unlabelled namespaces; the injector itself
then skips host-network pods, the ``kube-system``/``kube-public`` namespaces, pods that opt out
by label or annotation, and pods already injected (``sidecar.istio.io/status`` present), so a
second pass changes nothing. What is added is built by :mod:`meshd.control.injector_template`
(in CNI mode, ``MeshdSettings.cni``, without ``istio-init``: the pod gets Istio's redirect
annotations instead and the node agent programs the capture when it creates the pod's sandbox);
besides it the pod gets Istio's labels (``security.istio.io/tlsMode: istio``, canonical service
name and revision), ``kubectl.kubernetes.io/default-container`` and, unless scraping is off, the
``prometheus.io/*`` annotations pointing at the sidecar's merged metrics (``15020
/stats/prometheus``; the app's own ones travel in ``ISTIO_PROMETHEUS_ANNOTATIONS``).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

import jsonpatch

from machinery.meshcapture import INTERCEPTION_MODE, redirect_annotations
from meshd.api.identity import INJECT_POD_LABEL, INJECTION_LABEL, STATUS_PORT
from meshd.control.injector_template import (
    PROXY_NAME,
    VOLUME_NAMES,
    discovery_address,
    init_container,
    proxy_container,
    rewrite_probes,
    volumes,
)
from meshd.control.settings import MeshdSettings

__all__ = [
    "STATUS_ANNOTATION",
    "WEBHOOK_CONFIGURATION_NAME",
    "handle_admission_review",
    "inject_manifest",
    "inject_pod",
    "injection_skipped",
    "webhook_configuration",
]

log = logging.getLogger(__name__)

STATUS_ANNOTATION = "sidecar.istio.io/status"
WEBHOOK_CONFIGURATION_NAME = "istio-sidecar-injector"
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public"})
PROMETHEUS = "prometheus.io/"
MERGE_METRICS = "prometheus.istio.io/merge-metrics"
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"
_POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                                 "ReplicationController"})


def _is_false(value: Any) -> bool:
    return str(value).strip().lower() in ("false", "no", "n", "0", "off")


def injection_skipped(pod: Mapping[str, Any], namespace: str) -> str:
    """Why ``pod`` is not injected (Istio's ``injectRequired`` rules), or "" when it is."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if spec.get("hostNetwork"):
        return "host network pods are not injected"
    if namespace in IGNORED_NAMESPACES:
        return f"namespace {namespace} is not injected"
    for source, values in (("label", labels), ("annotation", annotations)):
        if INJECT_POD_LABEL in values and _is_false(values[INJECT_POD_LABEL]):
            return f'{source} {INJECT_POD_LABEL}="{values[INJECT_POD_LABEL]}"'
    if STATUS_ANNOTATION in annotations or any(c.get("name") == PROXY_NAME for c in [
            *(spec.get("initContainers") or []), *(spec.get("containers") or [])]):
        return "already injected"
    return ""


def _workload_name(meta: Mapping[str, Any], labels: Mapping[str, str], workload: str) -> str:
    """The workload for telemetry: the given one, else the owning Deployment (a ReplicaSet's name
    less its pod-template-hash), else the owner, else the pod's name or ``generateName`` stem."""
    if workload:
        return workload
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller", True):
            name = str(owner.get("name") or "")
            pod_hash = labels.get("pod-template-hash")
            if owner.get("kind") == "ReplicaSet" and pod_hash and name.endswith(f"-{pod_hash}"):
                return name[:-len(pod_hash) - 1]
            return name
    return str(meta.get("name") or str(meta.get("generateName") or "").rstrip("-") or "pod")


def _prometheus(annotations: dict[str, str]) -> dict[str, str]:
    """Point scraping at the sidecar's merged endpoint (in place); the app's own annotations."""
    if _is_false(annotations.get(f"{PROMETHEUS}scrape", "true")) or _is_false(annotations.get(MERGE_METRICS, "true")):
        return {}
    originals = {k[len(PROMETHEUS):]: str(v) for k, v in annotations.items() if k.startswith(PROMETHEUS)}
    annotations.update({f"{PROMETHEUS}scrape": "true", f"{PROMETHEUS}port": str(STATUS_PORT),
                        f"{PROMETHEUS}path": "/stats/prometheus"})
    return originals


def inject_pod(pod: Mapping[str, Any], settings: MeshdSettings, *, workload: str = "") -> dict[str, Any]:
    """A copy of ``pod`` (or of a pod template: metadata + spec) with the sidecar injected; ``pod``
    itself unchanged. Callers check :func:`injection_skipped` first."""
    out = copy.deepcopy(dict(pod))
    meta = out.setdefault("metadata", {})
    spec = out.setdefault("spec", {})
    labels: dict[str, str] = meta.setdefault("labels", {}) or {}
    annotations: dict[str, str] = meta.setdefault("annotations", {}) or {}
    meta["labels"], meta["annotations"] = labels, annotations
    original_annotations = dict(annotations)
    app_containers: list[dict[str, Any]] = spec.setdefault("containers", [])
    probers: dict[str, Any] = {}
    if not _is_false(original_annotations.get(REWRITE_PROBES, "true")):
        probers = rewrite_probes(app_containers)
    prometheus = _prometheus(annotations)
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name",
                      labels.get("app.kubernetes.io/name") or labels.get("app") or
                      _workload_name(meta, labels, workload))
    labels.setdefault("service.istio.io/canonical-revision",
                      labels.get("app.kubernetes.io/version") or labels.get("version") or "latest")
    if app_containers:
        annotations.setdefault("kubectl.kubernetes.io/default-container", str(app_containers[0]["name"]))
    proxy_pod = {"metadata": {**meta, "annotations": original_annotations}, "spec": spec}
    sidecar = proxy_container(proxy_pod, image=settings.proxy_image,
                              discovery_address=discovery_address(settings.namespace),
                              workload=_workload_name(meta, labels, workload), probers=probers,
                              prometheus=prometheus)
    if settings.cni:
        # The node agent programs the capture from these annotations when it creates the sandbox.
        annotations.update(redirect_annotations(original_annotations))
        added = [sidecar]
    else:
        added = [init_container(original_annotations, settings.proxy_image), sidecar]
    spec["initContainers"] = [*added, *(spec.get("initContainers") or [])]
    spec["volumes"] = [*(spec.get("volumes") or []), *volumes()]
    annotations[STATUS_ANNOTATION] = json.dumps({
        "initContainers": [str(c["name"]) for c in added], "containers": None, "volumes": list(VOLUME_NAMES),
        "imagePullSecrets": None, "revision": "default"}, separators=(",", ":"))
    return out


def injection_warnings(pod: Mapping[str, Any]) -> list[str]:
    """What the injection does differently from what the pod asks (kubectl prints these)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    mode = str(annotations.get(INTERCEPTION_MODE) or "REDIRECT")
    if mode != "REDIRECT":
        return [f"metadata.annotations[{INTERCEPTION_MODE}]: {mode} is not implemented by kubelab; "
                "the sidecar captures traffic with REDIRECT"]
    return []


# -- the webhook ------------------------------------------------------------------------------
def _response(review: Mapping[str, Any], uid: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
            "response": {"uid": uid, **fields}}


def handle_admission_review(review: dict[str, Any], settings: MeshdSettings) -> dict[str, Any]:
    """The AdmissionReview answering ``review``: allowed, with the injection as a JSONPatch when
    the pod is to be meshed; ``allowed: false`` with the reason when injection failed."""
    request = review.get("request") or {}
    uid = str(request.get("uid", ""))
    try:
        pod = request.get("object")
        if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod" or request.get("operation", "CREATE") \
                != "CREATE":
            return _response(review, uid, allowed=True)
        namespace = str(request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default")
        reason = injection_skipped(pod, namespace)
        if reason:
            log.debug("pod %s/%s not injected: %s", namespace, (pod.get("metadata") or {}).get("name", ""), reason)
            return _response(review, uid, allowed=True)
        patch = jsonpatch.make_patch(pod, inject_pod(pod, settings)).patch
        encoded = base64.b64encode(json.dumps(patch).encode()).decode()
        warnings = injection_warnings(pod)
        return _response(review, uid, allowed=True, patchType="JSONPatch", patch=encoded,
                         **({"warnings": warnings} if warnings else {}))
    except Exception as exc:  # failurePolicy Fail: a refusal with the reason, never a crash
        log.exception("sidecar injection failed for request %s", uid)
        return _response(review, uid, allowed=False,
                         status={"code": 500, "message": f"sidecar injection failed: {exc}"})


def webhook_configuration(ca_bundle: str, *, namespace: str = "istio-system", service: str = "istiod",
                          port: int = 443, url: str = "") -> dict[str, Any]:
    """The MutatingWebhookConfiguration ``istio-sidecar-injector`` (Istio's two default webhooks);
    ``ca_bundle`` is the base64 PEM of the mesh root. ``url`` replaces the Service reference."""
    client: dict[str, Any] = {"caBundle": ca_bundle}
    if url:
        client["url"] = url.rstrip("/") + "/inject"
    else:
        client["service"] = {"name": service, "namespace": namespace, "path": "/inject", "port": port}
    common = {
        "clientConfig": client,
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "reinvocationPolicy": "Never", "timeoutSeconds": 10, "matchPolicy": "Equivalent",
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION_NAME, "labels": {"app": "sidecar-injector"}},
        "webhooks": [
            {"name": "namespace.sidecar-injector.istio.io", **common,
             "namespaceSelector": {"matchExpressions": [
                 {"key": INJECTION_LABEL, "operator": "In", "values": ["enabled"]}]},
             "objectSelector": {"matchExpressions": [
                 {"key": INJECT_POD_LABEL, "operator": "NotIn", "values": ["false"]}]}},
            {"name": "object.sidecar-injector.istio.io", **common,
             "namespaceSelector": {"matchExpressions": [
                 {"key": INJECTION_LABEL, "operator": "DoesNotExist"},
                 {"key": "istio.io/rev", "operator": "DoesNotExist"}]},
             "objectSelector": {"matchExpressions": [
                 {"key": INJECT_POD_LABEL, "operator": "In", "values": ["true"]},
                 {"key": "istio.io/rev", "operator": "DoesNotExist"}]}},
        ],
    }


# -- kubelab mesh inject ----------------------------------------------------------------------
def inject_manifest(obj: Mapping[str, Any], settings: MeshdSettings) -> dict[str, Any]:
    """``obj`` with the sidecar injected into its pod or pod template (Pods, Deployments,
    StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs; a List's items each); other kinds and
    opted-out or already injected pods come back unchanged."""
    out = copy.deepcopy(dict(obj))
    kind = str(out.get("kind") or "")
    namespace = str((out.get("metadata") or {}).get("namespace") or "default")
    if kind == "List" or kind.endswith("List"):
        out["items"] = [inject_manifest(item, settings) for item in out.get("items") or []]
        return out
    name = str((out.get("metadata") or {}).get("name") or "")
    if kind == "Pod":
        return out if injection_skipped(out, namespace) else inject_pod(out, settings)
    holder: dict[str, Any] | None = None
    if kind in _POD_TEMPLATE_KINDS:
        holder = out.get("spec")
    elif kind == "CronJob":
        holder = ((out.get("spec") or {}).get("jobTemplate") or {}).get("spec")
    if not isinstance(holder, dict) or not isinstance(holder.get("template"), dict):
        return out
    template = holder["template"]
    if not injection_skipped(template, namespace):
        holder["template"] = inject_pod(template, settings, workload=name)
    return out
