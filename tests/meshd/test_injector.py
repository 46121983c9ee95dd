"""The sidecar injector: selection, the injected shape, probe and metrics rewrites, idempotence, AdmissionReview."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import pytest

from machinery.meshcapture import node_capture_args
from meshd.control.injector import (
    handle_admission_review,
    inject_manifest,
    inject_pod,
    injection_skipped,
    webhook_configuration,
)
from meshd.control.injector_template import iptables_args
from meshd.control.settings import MeshdSettings

SETTINGS = MeshdSettings(proxy_image="kubelab/proxyv2:0.1.0")


def pod(*, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
        containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "labels": labels or {"app": "web", "version": "v1"},
                     "annotations": annotations or {}},
        "spec": {"containers": containers or [{"name": "app", "image": "kubelab/nginx:1.22",
                                               "ports": [{"containerPort": 80, "name": "http"}]}], **spec},
    }


def review(obj: dict[str, Any], *, namespace: str = "shop", operation: str = "CREATE") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "req-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": namespace, "operation": operation, "object": obj}}


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(i for i in items if i["name"] == name)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- selection ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("obj", "namespace", "reason"),
    [
        pytest.param(pod(), "shop", "", id="plain-pod"),
        pytest.param(pod(labels={"sidecar.istio.io/inject": "false"}), "shop", 'label sidecar.istio.io/inject="false"',
                     id="label-false"),
        pytest.param(pod(annotations={"sidecar.istio.io/inject": "false"}), "shop",
                     'annotation sidecar.istio.io/inject="false"', id="annotation-false"),
        pytest.param(pod(hostNetwork=True), "shop", "host network pods are not injected", id="host-network"),
        pytest.param(pod(), "kube-system", "namespace kube-system is not injected", id="kube-system"),
        pytest.param(inject_pod(pod(), SETTINGS), "shop", "already injected", id="already-injected"),
    ],
)
def test_injection_selection(obj: dict[str, Any], namespace: str, reason: str) -> None:
    assert injection_skipped(obj, namespace) == reason


def test_webhook_configuration_selects_like_istio() -> None:
    config = webhook_configuration("Q0E=")
    assert config["metadata"]["name"] == "istio-sidecar-injector"
    by_namespace, by_object = config["webhooks"]
    for hook in (by_namespace, by_object):
        assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                  "resources": ["pods"]}]
        assert hook["clientConfig"] == {"caBundle": "Q0E=", "service": {
            "name": "istiod", "namespace": "istio-system", "path": "/inject", "port": 443}}
    assert by_namespace["namespaceSelector"]["matchExpressions"] == [
        {"key": "istio-injection", "operator": "In", "values": ["enabled"]}]
    assert by_namespace["objectSelector"]["matchExpressions"] == [
        {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]
    assert {"key": "istio-injection", "operator": "DoesNotExist"} in by_object["namespaceSelector"]["matchExpressions"]
    assert {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]} in \
        by_object["objectSelector"]["matchExpressions"]
    assert webhook_configuration("Q0E=", url="https://127.0.0.1:15017")["webhooks"][0]["clientConfig"]["url"] == \
        "https://127.0.0.1:15017/inject"


# -- shape --------------------------------------------------------------------------------------
def test_injected_pod_has_init_and_native_sidecar() -> None:
    original = pod(containers=[{"name": "app", "image": "app:1"}],
                   initContainers=[{"name": "migrate", "image": "app:1"}])
    before = copy.deepcopy(original)
    out = inject_pod(original, SETTINGS)
    assert original == before  # the input is not changed
    spec = out["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["istio-init", "istio-proxy", "migrate"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    init, proxy = spec["initContainers"][:2]
    assert init["image"] == proxy["image"] == "kubelab/proxyv2:0.1.0"
    assert init["imagePullPolicy"] == proxy["imagePullPolicy"] == "IfNotPresent"
    assert init["command"] == ["python3", "-m", "meshd.proxy.iptables"]
    assert init["args"] == ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
                            "-b", "*", "-d", "15090,15021,15020"]
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert init["securityContext"]["runAsUser"] == 0 and "restartPolicy" not in init
    assert proxy["restartPolicy"] == "Always"
    assert proxy["securityContext"]["runAsUser"] == 1337 and proxy["securityContext"]["runAsGroup"] == 1337
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}
    assert proxy["startupProbe"]["httpGet"]["port"] == 15021
    assert proxy["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    env = env_of(proxy)
    assert env["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert env["INSTANCE_IP"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["SERVICE_ACCOUNT"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    assert env["CA_ADDR"] == "istiod.istio-system.svc:15012"
    assert json.loads(env["ISTIO_METAJSON_LABELS"]) == {
        "app": "web", "version": "v1", "security.istio.io/tlsMode": "istio",
        "service.istio.io/canonical-name": "web", "service.istio.io/canonical-revision": "v1"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    token = volumes["istio-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}
    assert volumes["istiod-ca-cert"]["configMap"]["name"] == "istio-ca-root-cert"
    assert "emptyDir" in volumes["istio-data"]
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    assert mounts["istio-token"] == "/var/run/secrets/tokens"
    assert mounts["istiod-ca-cert"] == "/var/run/secrets/istio"
    meta = out["metadata"]
    status = json.loads(meta["annotations"]["sidecar.istio.io/status"])
    assert status["initContainers"] == ["istio-init", "istio-proxy"]
    assert set(status["volumes"]) == {"istio-token", "istiod-ca-cert", "istio-data", "istio-podinfo"}
    assert meta["labels"]["security.istio.io/tlsMode"] == "istio"
    assert meta["labels"]["service.istio.io/canonical-name"] == "web"
    assert meta["labels"]["service.istio.io/canonical-revision"] == "v1"
    assert meta["annotations"]["kubectl.kubernetes.io/default-container"] == "app"


def test_cni_mode_injects_no_istio_init_and_writes_the_redirect_annotations() -> None:
    cni = MeshdSettings(proxy_image="kubelab/proxyv2:0.1.0", cni=True)
    user = {"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}
    out = inject_pod(pod(annotations=user, initContainers=[{"name": "migrate", "image": "app:1"}]), cni)
    assert [c["name"] for c in out["spec"]["initContainers"]] == ["istio-proxy", "migrate"]
    annotations = out["metadata"]["annotations"]
    assert json.loads(annotations["sidecar.istio.io/status"])["initContainers"] == ["istio-proxy"]
    assert annotations["sidecar.istio.io/interceptionMode"] == "REDIRECT"
    assert annotations["traffic.sidecar.istio.io/includeOutboundIPRanges"] == "*"
    assert annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] == "5432"
    # The node agent computes from these the same flags istio-init would have been given.
    assert node_capture_args(out) == iptables_args(user)
    assert node_capture_args(inject_pod(pod(annotations=user), SETTINGS)) is None  # istio-init does it there
    assert inject_manifest(out, cni) == out


def test_injection_is_idempotent() -> None:
    once = inject_pod(pod(), SETTINGS)
    assert injection_skipped(once, "shop") == "already injected"
    assert inject_manifest(once, SETTINGS) == once


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, {"-i": "*", "-x": "", "-b": "*", "-d": "15090,15021,15020"}, id="defaults"),
        pytest.param({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12",
                      "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.1/32"},
                     {"-i": "10.96.0.0/12", "-x": "10.96.0.1/32"}, id="ip-ranges"),
        pytest.param({"traffic.sidecar.istio.io/includeInboundPorts": "8080,9090"}, {"-b": "8080,9090"},
                     id="inbound-ports"),
        pytest.param({"traffic.sidecar.istio.io/excludeInboundPorts": "9000, 15021"},
                     {"-d": "15090,15021,15020,9000"}, id="exclude-inbound"),
        pytest.param({"traffic.sidecar.istio.io/excludeOutboundPorts": "3306,5432"}, {"-o": "3306,5432"},
                     id="exclude-outbound"),
    ],
)
def test_traffic_annotations_become_iptables_flags(annotations: dict[str, str], expected: dict[str, str]) -> None:
    args = iptables_args(annotations)
    flags = dict(zip(args[::2], args[1::2], strict=True))
    for flag, value in expected.items():
        assert flags[flag] == value
    if "-o" not in expected:
        assert "-o" not in flags
    init = inject_pod(pod(annotations=annotations), SETTINGS)["spec"]["initContainers"][0]
    assert init["args"] == args


def test_probes_are_rewritten_to_the_sidecar() -> None:
    app = {"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}],
           "livenessProbe": {"httpGet": {"path": "/live", "port": "http",
                                         "httpHeaders": [{"name": "X", "value": "1"}]}, "periodSeconds": 7},
           "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 3},
           "startupProbe": {"exec": {"command": ["true"]}}}
    out = inject_pod(pod(containers=[app]), SETTINGS)
    rewritten = out["spec"]["containers"][0]
    assert rewritten["livenessProbe"] == {"httpGet": {"path": "/app-health/app/livez", "port": 15020,
                                                      "scheme": "HTTP"}, "periodSeconds": 7}
    assert rewritten["readinessProbe"] == {"httpGet": {"path": "/app-health/app/readyz", "port": 15020,
                                                       "scheme": "HTTP"}, "timeoutSeconds": 3}
    assert rewritten["startupProbe"] == {"exec": {"command": ["true"]}}
    probers = json.loads(env_of(out["spec"]["initContainers"][1])["ISTIO_KUBE_APP_PROBERS"])
    assert probers == {
        "/app-health/app/livez": {"httpGet": {"path": "/live", "port": 8080, "scheme": "HTTP",
                                              "httpHeaders": [{"name": "X", "value": "1"}]}, "timeoutSeconds": 1},
        "/app-health/app/readyz": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 3},
    }
    kept = inject_pod(pod(containers=[app], annotations={"sidecar.istio.io/rewriteAppHTTPProbers": "false"}),
                      SETTINGS)
    assert kept["spec"]["containers"][0]["livenessProbe"] == app["livenessProbe"]


@pytest.mark.parametrize(
    ("annotations", "pod_annotations", "env"),
    [
        pytest.param({}, {"prometheus.io/scrape": "true", "prometheus.io/port": "15020",
                          "prometheus.io/path": "/stats/prometheus"}, None, id="none"),
        pytest.param({"prometheus.io/scrape": "true", "prometheus.io/port": "9100", "prometheus.io/path": "/m"},
                     {"prometheus.io/scrape": "true", "prometheus.io/port": "15020",
                      "prometheus.io/path": "/stats/prometheus"},
                     {"scrape": "true", "port": "9100", "path": "/m"}, id="app-metrics-merged"),
        pytest.param({"prometheus.io/scrape": "false"}, {"prometheus.io/scrape": "false"}, None, id="scrape-off"),
    ],
)
def test_prometheus_annotations_move_to_merged_metrics(annotations: dict[str, str], pod_annotations: dict[str, str],
                                                       env: dict[str, str] | None) -> None:
    out = inject_pod(pod(annotations=annotations), SETTINGS)
    got = {k: v for k, v in out["metadata"]["annotations"].items() if k.startswith("prometheus.io/")}
    assert got == pod_annotations
    value = env_of(out["spec"]["initContainers"][1]).get("ISTIO_PROMETHEUS_ANNOTATIONS")
    assert (json.loads(value) if value else None) == env


def test_workload_name_from_replicaset_owner() -> None:
    obj = pod(labels={"app": "web", "pod-template-hash": "5d4f8"})
    obj["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-5d4f8", "controller": True}]
    env = env_of(inject_pod(obj, SETTINGS)["spec"]["initContainers"][1])
    assert env["ISTIO_META_WORKLOAD_NAME"] == "web"


# -- AdmissionReview ----------------------------------------------------------------------------
def test_admission_review_returns_a_jsonpatch_that_injects() -> None:
    obj = pod()
    answer = handle_admission_review(review(obj), SETTINGS)
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and answer["apiVersion"] == "admission.k8s.io/v1"
    assert response["uid"] == "req-1" and response["allowed"] is True and response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
    assert patched == inject_pod(obj, SETTINGS)


@pytest.mark.parametrize("settings", [SETTINGS, MeshdSettings(proxy_image="kubelab/proxyv2:0.1.0", cni=True)],
                         ids=["istio-init", "cni"])
@pytest.mark.parametrize("mode", ["TPROXY", "NONE"])
def test_an_interception_mode_other_than_redirect_is_a_warning_and_redirect_is_used(
        settings: MeshdSettings, mode: str) -> None:
    obj = pod(annotations={"sidecar.istio.io/interceptionMode": mode})
    response = handle_admission_review(review(obj), settings)["response"]
    assert response["allowed"] is True
    assert response["warnings"] == [f"metadata.annotations[sidecar.istio.io/interceptionMode]: {mode} is not "
                                    "implemented by kubelab; the sidecar captures traffic with REDIRECT"]
    patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
    if settings.cni:
        assert node_capture_args(patched) is not None  # the node agent captures (REDIRECT) instead of failing
    else:
        init = by_name(patched["spec"]["initContainers"], "istio-init")
        assert init["args"][init["args"].index("-m") + 1] == "REDIRECT"
    assert "warnings" not in handle_admission_review(review(pod()), settings)["response"]


@pytest.mark.parametrize(
    ("obj", "operation"),
    [
        pytest.param(pod(labels={"sidecar.istio.io/inject": "false"}), "CREATE", id="opted-out"),
        pytest.param(inject_pod(pod(), SETTINGS), "CREATE", id="already-injected"),
        pytest.param(pod(), "UPDATE", id="update"),
    ],
)
def test_admission_review_allows_unchanged(obj: dict[str, Any], operation: str) -> None:
    response = handle_admission_review(review(obj, operation=operation), SETTINGS)["response"]
    assert response == {"uid": "req-1", "allowed": True}


def test_admission_review_refuses_what_it_cannot_inject() -> None:
    broken = pod()
    broken["spec"]["containers"] = [{"image": "no-name:1", "livenessProbe": {"httpGet": {"port": 80}}}]
    response = handle_admission_review(review(broken), SETTINGS)["response"]
    assert response["allowed"] is False and "sidecar injection failed" in response["status"]["message"]


# -- kubelab mesh inject ------------------------------------------------------------------------
def _deployment(kind: str = "Deployment") -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "a:1"}]}}
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web", "namespace": "shop"}, "spec": spec}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"])
def test_manifest_injection_into_pod_templates(kind: str) -> None:
    out = inject_manifest(_deployment(kind), SETTINGS)
    spec = out["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else out["spec"]
    template = spec["template"]
    assert [c["name"] for c in template["spec"]["initContainers"]] == ["istio-init", "istio-proxy"]
    assert env_of(template["spec"]["initContainers"][1])["ISTIO_META_WORKLOAD_NAME"] == "web"
    assert "sidecar.istio.io/status" in template["metadata"]["annotations"]


def test_manifest_injection_leaves_other_kinds_and_walks_lists() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    assert inject_manifest(service, SETTINGS) == service
    listed = inject_manifest({"apiVersion": "v1", "kind": "List", "items": [service, pod()]}, SETTINGS)
    assert listed["items"][0] == service
    assert listed["items"][1]["spec"]["initContainers"][1]["name"] == "istio-proxy"
