"""The bad-input corpus: requests a Kubernetes apiserver must refuse, and how it refuses them.

Read by ``test_bad_input.py``, which sends every :class:`Case` to the embedded apiserver and
checks the answer (HTTP code, ``Status`` body, the field named in the message) and that the
store was left untouched. Each expected code is Kubernetes' own answer (see the handlers in
k8s.io/apiserver/pkg/endpoints/handlers and the ``Validate*Options`` functions of
apimachinery); where kubelab answers differently today the case carries ``bug=`` and runs as a
strict xfail, so fixing the server turns it into a hard failure until the mark is removed.

Objects present before every case: ConfigMap ``default/probe`` and Deployment ``default/web``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"

MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One request and the ``Status`` Kubernetes answers it with."""

    method: str
    path: str
    body: Any = None
    """Sent JSON-encoded unless ``raw`` is given."""
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    code: int = 400
    reason: str = "BadRequest"
    mentions: tuple[str, ...] = ()
    """Substrings the Status message (or its details) must contain: the offending field."""


def deployment(name: str = "fresh") -> dict[str, Any]:
    """A valid Deployment; cases break one thing in a copy of it."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                                       "ports": [{"containerPort": 80}]}]}}},
    }


def broken(change: Callable[[dict[str, Any]], object], name: str = "fresh") -> dict[str, Any]:
    """A Deployment with ``change`` applied (``change`` mutates in place)."""
    obj = copy.deepcopy(deployment(name))
    change(obj)
    return obj


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting a dotted path (``spec.replicas``) in the Deployment."""
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = obj
        for part in parents:
            target = target[part]
        target[last] = value
    return change


def _pop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = obj
        for part in parents:
            target = target[part]
        del target[last]
    return change


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """``{"a":{"a":...leaf...}}`` nested ``depth`` levels."""
    return b'{"a":' * depth + leaf + b"}" * depth


def case(case_id: str, method: str, path: str, body: Any = None, *, bug: str = "", **kwargs: Any) -> Any:
    """A ``pytest.param``; ``bug`` (what kubelab does instead) makes it a strict xfail."""
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(Case(method, path, body, **kwargs), id=case_id, marks=marks)


def _cm(name: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, **extra}


def _big_cm(name: str, size: int) -> bytes:
    return b'{"metadata":{"name":"' + name.encode() + b'"},"data":{"k":"' + b"x" * size + b'"}}'


# ---- syntax: bodies that are not one JSON/YAML object ------------------------------------------
SYNTAX = [
    case("malformed-json", "POST", CM, raw=b'{"metadata": {"name": "x",}}'),
    case("truncated-json", "POST", CM, raw=b'{"metadata": {"name": "x"}'),
    case("json-array", "POST", CM, raw=b'[{"metadata": {"name": "x"}}]'),
    case("json-number", "POST", CM, raw=b"42"),
    case("json-string", "POST", CM, raw=b'"configmap"'),
    case("json-null", "POST", CM, raw=b"null"),
    case("invalid-utf8", "POST", CM, raw=b'{"metadata":{"name":"x\xff\xfe"}}'),
    case("lone-surrogate-escape", "POST", CM, raw=b'{"metadata":{"name":"x\\ud800"}}'),
    case("utf8-bom", "POST", CM, raw=b'\xef\xbb\xbf{"metadata":{"name":"x"}}'),
    case("empty-body", "POST", CM, raw=b""),
    case("whitespace-body", "POST", CM, raw=b" \n\t "),
    case("yaml-syntax-error", "POST", CM, raw=b"metadata: [a, {b\n", content_type=YAML),
    case("yaml-bad-indent", "POST", CM, raw=b"metadata:\n  name: x\n bad: y\n", content_type=YAML),
    case("yaml-list", "POST", CM, raw=b"- metadata: {name: x}\n- b\n", content_type=YAML),
    case("yaml-scalar", "POST", CM, raw=b"just a string\n", content_type=YAML),
    case("yaml-python-tag", "POST", CM, raw=b'!!python/object/apply:os.system ["true"]\n', content_type=YAML),
    case("yaml-invalid-utf8", "POST", CM, raw=b"metadata: {name: \xff}\n", content_type=YAML),
    case("json-nested-10000-objects", "POST", CM, raw=nested(10_000)),
    case("json-nested-10000-arrays", "POST", CM, raw=b"[" * 10_000 + b"]" * 10_000),
    case("json-nested-1000-in-data", "POST", CM,
         raw=b'{"metadata":{"name":"deep"},"data":' + nested(1000) + b"}", mentions=("data",)),
    case("json-nested-1000-in-labels", "POST", CM,
         raw=b'{"metadata":{"name":"deep","labels":' + nested(1000) + b"}}", mentions=("metadata.labels",)),
    case("yaml-nested-10000-flow", "POST", CM, raw=b"[" * 10_000 + b"]" * 10_000, content_type=YAML),
    case("yaml-nested-3000-block", "POST", CM, raw=b"a:\n" + b"  [" * 3000 + b"]" * 3000, content_type=YAML),
    case("huge-number-400-digits", "POST", DEPLOY,
         raw=b'{"metadata":{"name":"n"},"spec":{"replicas":' + b"9" * 400 + b"}}"),
    case("replicas-int32-overflow", "POST", DEPLOY, broken(_set("spec.replicas", 10_000_000_000)),
         mentions=("spec.replicas",)),
    case("replicas-float", "POST", DEPLOY, broken(_set("spec.replicas", 2.5)), mentions=("spec.replicas",)),
    case("nan-literal", "POST", DEPLOY, raw=b'{"metadata":{"name":"n"},"spec":{"replicas":NaN}}'),
    case("infinity-literal", "POST", DEPLOY, raw=b'{"metadata":{"name":"n"},"spec":{"replicas":Infinity}}'),
    case("minus-infinity-literal", "POST", DEPLOY, raw=b'{"metadata":{"name":"n"},"spec":{"replicas":-Infinity}}'),
    case("duplicate-keys-strict", "POST", CM + "?fieldValidation=Strict",
         raw=b'{"metadata":{"name":"dup"},"metadata":{"name":"dup2"}}', mentions=('duplicate field "metadata"',)),
]

# ---- size ----------------------------------------------------------------------------------------
SIZE = [
    case("body-over-3MiB", "POST", CM, raw=_big_cm("big", 3 * MIB + 16), code=413,
         reason="RequestEntityTooLarge"),
    case("yaml-body-over-3MiB", "POST", CM, raw=b"metadata: {name: big}\ndata: {k: " + b"x" * (3 * MIB) + b"}\n",
         content_type=YAML, code=413, reason="RequestEntityTooLarge"),
    case("patch-body-over-3MiB", "PATCH", f"{CM}/probe", raw=b'{"data":{"k":"' + b"x" * (3 * MIB) + b'"}}',
         content_type=MERGE_PATCH, code=413, reason="RequestEntityTooLarge"),
    case("configmap-2MiB-data", "POST", CM, raw=_big_cm("big", 2 * MIB), code=422, reason="Invalid",
         mentions=("data", "1048576")),
    case("configmap-2.9MiB-data", "POST", CM, raw=_big_cm("big", int(2.9 * MIB)), code=422, reason="Invalid",
         mentions=("data",)),
    case("json-patch-10001-ops", "PATCH", f"{CM}/probe",
         [{"op": "add", "path": "/data", "value": {}}] * 10_001, content_type=JSON_PATCH, code=413,
         reason="RequestEntityTooLarge"),
]

# ---- decoding: wrong JSON types ------------------------------------------------------------------
TYPES = [
    case("replicas-string", "POST", DEPLOY, broken(_set("spec.replicas", "3")), mentions=("spec.replicas",)),
    case("labels-list", "POST", DEPLOY, broken(_set("metadata.labels", ["app"])), mentions=("metadata.labels",)),
    case("containers-object", "POST", DEPLOY,
         broken(_set("spec.template.spec.containers", {"name": "web", "image": "nginx"})),
         mentions=("spec.template.spec.containers",)),
    case("containerPort-string", "POST", DEPLOY,
         broken(lambda d: _container(d)["ports"][0].update(containerPort="eighty")), mentions=("containerPort",)),
    case("metadata-string", "POST", CM, {"metadata": "probe"}, mentions=("metadata",)),
    case("name-number", "POST", CM, {"metadata": {"name": 5}}, mentions=("metadata.name",)),
    case("label-value-number", "POST", CM, {"metadata": {"name": "x", "labels": {"a": 1}}},
         mentions=("metadata.labels",)),
    case("configmap-data-number", "POST", CM, _cm("x", data={"a": 1}), mentions=("data",)),
    case("apiVersion-number", "POST", CM, {"apiVersion": 5, "metadata": {"name": "x"}}, mentions=("apiVersion",)),
    case("kind-list", "POST", CM, {"kind": ["ConfigMap"], "metadata": {"name": "x"}}, mentions=("kind",)),
]

# ---- validation: 422 Invalid naming the field ----------------------------------------------------
INVALID = [
    case("containerPort-0", "POST", DEPLOY, broken(lambda d: _container(d)["ports"][0].update(containerPort=0)),
         code=422, reason="Invalid", mentions=("spec.template.spec.containers[0].ports[0].containerPort",)),
    case("containerPort-70000", "POST", DEPLOY,
         broken(lambda d: _container(d)["ports"][0].update(containerPort=70000)),
         code=422, reason="Invalid", mentions=("spec.template.spec.containers[0].ports[0].containerPort",)),
    case("replicas-negative", "POST", DEPLOY, broken(_set("spec.replicas", -1)), code=422, reason="Invalid",
         mentions=("spec.replicas",)),
    case("name-uppercase", "POST", DEPLOY, deployment("Web"), code=422, reason="Invalid",
         mentions=("metadata.name",)),
    case("name-underscore", "POST", DEPLOY, deployment("we_b"), code=422, reason="Invalid",
         mentions=("metadata.name",)),
    case("name-254-chars", "POST", DEPLOY, deployment("a" * 254), code=422, reason="Invalid",
         mentions=("metadata.name",)),
    case("name-empty", "POST", DEPLOY, deployment(""), code=422, reason="Invalid", mentions=("metadata.name",)),
    case("label-key-invalid", "POST", CM, {"metadata": {"name": "x", "labels": {"bad key!": "v"}}},
         code=422, reason="Invalid", mentions=("metadata.labels",)),
    case("label-value-invalid", "POST", CM, {"metadata": {"name": "x", "labels": {"k": "bad value!"}}},
         code=422, reason="Invalid", mentions=("metadata.labels",)),
    case("label-value-64-chars", "POST", CM, {"metadata": {"name": "x", "labels": {"k": "v" * 64}}},
         code=422, reason="Invalid", mentions=("metadata.labels",)),
    case("configmap-key-invalid", "POST", CM, _cm("x", data={"bad key/": "v"}), code=422, reason="Invalid",
         mentions=("data",)),
    case("duplicate-container-names", "POST", DEPLOY,
         broken(lambda d: d["spec"]["template"]["spec"]["containers"].append({"name": "web", "image": "x"})),
         code=422, reason="Invalid", mentions=("spec.template.spec.containers[1].name",)),
    case("selector-not-matching-template", "POST", DEPLOY,
         broken(_set("spec.selector.matchLabels", {"app": "other"})), code=422, reason="Invalid",
         mentions=("selector",)),
    case("selector-missing", "POST", DEPLOY, broken(_pop("spec.selector")), code=422, reason="Invalid",
         mentions=("spec.selector",)),
    case("containers-empty", "POST", DEPLOY, broken(_set("spec.template.spec.containers", [])), code=422,
         reason="Invalid", mentions=("spec.template.spec.containers",)),
    case("containers-missing", "POST", DEPLOY, broken(_pop("spec.template.spec.containers")), code=422,
         reason="Invalid", mentions=("spec.template.spec.containers",)),
    case("image-missing", "POST", DEPLOY, broken(lambda d: _container(d).pop("image")), code=422,
         reason="Invalid", mentions=("spec.template.spec.containers[0].image",)),
    case("pod-without-containers", "POST", PODS, {"metadata": {"name": "p"}, "spec": {}}, code=422,
         reason="Invalid", mentions=("spec.containers",)),
]

# ---- fieldValidation, identity (type, namespace, name, resourceVersion) --------------------------
IDENTITY = [
    case("strict-unknown-spec-field", "POST", DEPLOY + "?fieldValidation=Strict",
         broken(_set("spec.bogus", 1)), mentions=('unknown field "spec.bogus"',)),
    case("strict-unknown-container-field", "POST", DEPLOY + "?fieldValidation=Strict",
         broken(lambda d: _container(d).update(bogus=1)),
         mentions=('unknown field "spec.template.spec.containers[0].bogus"',)),
    case("fieldValidation-unsupported", "POST", DEPLOY + "?fieldValidation=Loose", deployment(),
         code=422, reason="Invalid", mentions=("fieldValidation", "Loose")),
    case("apiVersion-mismatch", "POST", DEPLOY, broken(_set("apiVersion", "apps/v1beta1")),
         mentions=("apps/v1beta1",)),
    case("kind-mismatch", "POST", DEPLOY, broken(_set("kind", "ReplicaSet")), mentions=("ReplicaSet",)),
    case("kind-mismatch-without-apiVersion", "POST", DEPLOY,
         broken(lambda d: (d.pop("apiVersion"), d.update(kind="ReplicaSet"))), mentions=("ReplicaSet",)),
    case("apiVersion-mismatch-without-kind", "POST", DEPLOY,
         broken(lambda d: (d.pop("kind"), d.update(apiVersion="v1"))), mentions=("v1",)),
    case("namespace-mismatch-create", "POST", DEPLOY, broken(_set("metadata.namespace", "kube-system")),
         mentions=("namespace",)),
    case("namespace-missing", "POST", "/api/v1/namespaces/nope/configmaps", _cm("x"), code=404,
         reason="NotFound", mentions=('namespaces "nope" not found',)),
    case("resourceVersion-on-create", "POST", CM, {"metadata": {"name": "x", "resourceVersion": "5"}},
         mentions=("resourceVersion",)),
    case("name-mismatch-put", "PUT", f"{CM}/probe", _cm("other"), mentions=("other", "probe")),
    case("namespace-mismatch-put", "PUT", f"{CM}/probe", {"metadata": {"name": "probe", "namespace": "kube-system"}},
         mentions=("namespace",)),
    case("stale-resourceVersion-put", "PUT", f"{CM}/probe", {"metadata": {"name": "probe", "resourceVersion": "1"}},
         code=409, reason="Conflict", mentions=("probe",)),
    case("put-missing-object", "PUT", f"{CM}/absent", _cm("absent"), code=404, reason="NotFound",
         mentions=("absent",)),
]

# ---- media types ---------------------------------------------------------------------------------
MEDIA = [
    case("content-type-html", "POST", CM, raw=b"<html></html>", content_type="text/html", code=415,
         reason="UnsupportedMediaType"),
    case("content-type-xml", "POST", CM, raw=b"<configmap/>", content_type="application/xml", code=415,
         reason="UnsupportedMediaType"),
    case("content-type-octet-stream", "POST", CM, raw=b"\x00\x01\x02", content_type="application/octet-stream",
         code=415, reason="UnsupportedMediaType"),
    case("protobuf-garbage", "POST", CM, raw=bytes(range(7, 200, 3)), content_type=PROTOBUF),
    case("protobuf-garbage-after-magic", "POST", CM, raw=b"k8s\x00" + bytes(range(250, 150, -3)),
         content_type=PROTOBUF),
    case("accept-xml-only", "GET", CM, headers={"Accept": "application/xml"}, code=406, reason="NotAcceptable"),
    case("accept-html-only-item", "GET", f"{CM}/probe", headers={"Accept": "text/html"}, code=406,
         reason="NotAcceptable"),
    case("patch-as-application-json", "PATCH", f"{CM}/probe", {"data": {"a": "b"}}, code=415,
         reason="UnsupportedMediaType"),
    case("patch-as-text-plain", "PATCH", f"{CM}/probe", {"data": {"a": "b"}}, content_type="text/plain",
         code=415, reason="UnsupportedMediaType"),
    case("patch-as-yaml", "PATCH", f"{CM}/probe", raw=b"data: {a: b}\n", content_type=YAML, code=415,
         reason="UnsupportedMediaType"),
]

# ---- PATCH ---------------------------------------------------------------------------------------
_APPLY_CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {a: b}\n"
PATCH = [
    case("json-patch-not-a-list", "PATCH", f"{CM}/probe", {"op": "add", "path": "/data", "value": {}},
         content_type=JSON_PATCH),
    case("json-patch-list-of-numbers", "PATCH", f"{CM}/probe", [1, 2], content_type=JSON_PATCH),
    case("json-patch-unknown-op", "PATCH", f"{CM}/probe", [{"op": "frobnicate", "path": "/data", "value": {}}],
         content_type=JSON_PATCH, code=422, reason="Invalid", mentions=("frobnicate",)),
    case("json-patch-missing-op", "PATCH", f"{CM}/probe", [{"path": "/data", "value": {}}],
         content_type=JSON_PATCH, code=422, reason="Invalid"),
    case("json-patch-path-to-nowhere", "PATCH", f"{CM}/probe", [{"op": "replace", "path": "/nowhere/deep",
                                                                 "value": 1}],
         content_type=JSON_PATCH, code=422, reason="Invalid", mentions=("nowhere",)),
    case("json-patch-remove-missing", "PATCH", f"{CM}/probe", [{"op": "remove", "path": "/data/absent"}],
         content_type=JSON_PATCH, code=422, reason="Invalid", mentions=("absent",)),
    case("json-patch-failing-test", "PATCH", f"{CM}/probe", [{"op": "test", "path": "/metadata/name",
                                                              "value": "other"}],
         content_type=JSON_PATCH, code=422, reason="Invalid"),
    case("json-patch-renames", "PATCH", f"{CM}/probe", [{"op": "replace", "path": "/metadata/name",
                                                         "value": "other"}],
         content_type=JSON_PATCH, mentions=("other", "probe")),
    case("merge-patch-renames", "PATCH", f"{CM}/probe", {"metadata": {"name": "other"}}, content_type=MERGE_PATCH,
         mentions=("other", "probe")),
    case("merge-patch-moves-namespace", "PATCH", f"{CM}/probe", {"metadata": {"namespace": "kube-system"}},
         content_type=MERGE_PATCH, mentions=("namespace",)),
    case("merge-patch-not-an-object", "PATCH", f"{CM}/probe", [1], content_type=MERGE_PATCH),
    case("merge-patch-empty-body", "PATCH", f"{CM}/probe", raw=b"", content_type=MERGE_PATCH),
    case("merge-patch-type-error", "PATCH", f"{DEPLOY}/web", {"spec": {"replicas": "many"}},
         content_type=MERGE_PATCH, code=422, reason="Invalid", mentions=("replicas",)),
    case("merge-patch-nested-1000", "PATCH", f"{CM}/probe", raw=b'{"data":' + nested(1000) + b"}",
         content_type=MERGE_PATCH, code=422, reason="Invalid"),
    case("merge-patch-invalid-value", "PATCH", f"{DEPLOY}/web", {"spec": {"replicas": -5}},
         content_type=MERGE_PATCH, code=422, reason="Invalid", mentions=("spec.replicas",)),
    case("smp-bad-patch-directive", "PATCH", f"{CM}/probe", {"data": {"$patch": "explode"}},
         content_type=STRATEGIC_PATCH, mentions=("explode",)),
    case("smp-bad-list-directive", "PATCH", f"{DEPLOY}/web",
         {"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "explode"}]}}}},
         content_type=STRATEGIC_PATCH, mentions=("explode",)),
    case("smp-delete-without-merge-key", "PATCH", f"{DEPLOY}/web",
         {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}},
         content_type=STRATEGIC_PATCH, mentions=("name",)),
    case("apply-without-fieldManager", "PATCH", f"{CM}/probe", raw=_APPLY_CM, content_type=APPLY_PATCH,
         code=422, reason="Invalid", mentions=("fieldManager",)),
    case("force-on-merge-patch", "PATCH", f"{CM}/probe?force=true", {"data": {"a": "b"}},
         content_type=MERGE_PATCH, code=422, reason="Invalid", mentions=("force",)),
    case("apply-a-list", "PATCH", f"{CM}/probe?fieldManager=t", raw=b"- a\n", content_type=APPLY_PATCH),
    case("apply-creates-other-name", "PATCH", f"{CM}/absent?fieldManager=t",
         raw=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n", content_type=APPLY_PATCH,
         mentions=("other", "absent")),
    case("apply-wrong-kind", "PATCH", f"{CM}/absent?fieldManager=t",
         raw=b"apiVersion: v1\nkind: Secret\nmetadata: {name: absent}\n", content_type=APPLY_PATCH,
         mentions=("Secret",)),
    case("patch-missing-object", "PATCH", f"{CM}/absent", {"data": {"a": "b"}}, content_type=MERGE_PATCH,
         code=404, reason="NotFound", mentions=("absent",)),
]

# ---- query parameters and option bodies ----------------------------------------------------------
QUERY = [
    case("labelSelector-unclosed-set", "GET", CM + "?labelSelector=a%20in%20(b"),
    case("labelSelector-double-bang", "GET", CM + "?labelSelector=!!"),
    case("labelSelector-key-too-long", "GET", CM + "?labelSelector=" + "a" * 70 + "=b"),
    case("fieldSelector-unsupported-field", "GET", CM + "?fieldSelector=spec.foo%3Dbar", mentions=("spec.foo",)),
    case("fieldSelector-unsupported-on-deployments", "GET", DEPLOY + "?fieldSelector=spec.replicas%3D1",
         mentions=("spec.replicas",)),
    case("limit-abc", "GET", CM + "?limit=abc", mentions=("limit",)),
    case("resourceVersion-abc", "GET", CM + "?resourceVersion=abc", mentions=("resourceVersion",)),
    case("continue-garbage", "GET", CM + "?continue=garbage", mentions=("continue",)),
    case("watch-resourceVersion-abc", "GET", CM + "?watch=true&resourceVersion=abc", mentions=("resourceVersion",)),
    case("watch-timeoutSeconds-abc", "GET", CM + "?watch=true&timeoutSeconds=abc", mentions=("timeoutSeconds",)),
    case("list-timeoutSeconds-abc", "GET", CM + "?timeoutSeconds=abc", mentions=("timeoutSeconds",)),
    case("gracePeriodSeconds-abc", "DELETE", f"{CM}/probe?gracePeriodSeconds=abc", mentions=("gracePeriodSeconds",)),
    case("dryRun-Maybe-create", "POST", CM + "?dryRun=Maybe", _cm("x"), code=422, reason="Invalid",
         mentions=("dryRun",)),
    case("propagationPolicy-Sideways", "DELETE", f"{CM}/probe?propagationPolicy=Sideways", code=422,
         reason="Invalid", mentions=("propagationPolicy",)),
    case("delete-body-grace-string", "DELETE", f"{CM}/probe", {"gracePeriodSeconds": "abc"},
         mentions=("gracePeriodSeconds",)),
    case("delete-body-preconditions-string", "DELETE", f"{CM}/probe", {"preconditions": "x"},
         mentions=("preconditions",)),
    case("delete-body-dryRun-Maybe", "DELETE", f"{CM}/probe", {"dryRun": ["Maybe"]}, code=422, reason="Invalid",
         mentions=("dryRun",)),
    case("delete-body-a-list", "DELETE", f"{CM}/probe", [1]),
    case("binding-target-string", "POST", f"{PODS}/p/binding", {"target": "node-1"}, mentions=("target",)),
    case("eviction-deleteOptions-string", "POST", f"{PODS}/p/eviction", {"deleteOptions": "x"},
         mentions=("deleteOptions",)),
    case("scale-spec-string", "PUT", f"{DEPLOY}/web/scale", {"spec": "x"}, mentions=("spec",)),
    case("finalize-finalizers-string", "PUT", "/api/v1/namespaces/default/finalize",
         {"metadata": {"name": "default"}, "spec": {"finalizers": "ab"}}, mentions=("spec.finalizers",)),
]

# ---- paths and verbs -----------------------------------------------------------------------------
ROUTES = [
    case("api-v2-pods", "GET", "/api/v2/pods", code=404, reason="NotFound"),
    case("api-v2-namespaced-pods", "GET", "/api/v2/namespaces/default/pods", code=404, reason="NotFound"),
    case("apps-v1-foos", "GET", "/apis/apps/v1/foos", code=404, reason="NotFound"),
    case("apps-v1-namespaced-foos", "POST", "/apis/apps/v1/namespaces/default/foos", _cm("x"), code=404,
         reason="NotFound"),
    # An unknown group answers kube-apiserver's plain-text 404 page: see test_compat_bugs.py.
    case("unknown-subresource", "GET", f"{PODS}/p/bogus", code=404, reason="NotFound"),
    case("too-many-segments", "GET", f"{CM}/probe/status/extra", code=404, reason="NotFound"),
    case("get-missing-object", "GET", f"{CM}/absent", code=404, reason="NotFound", mentions=("absent",)),
    case("post-to-item", "POST", f"{CM}/probe", _cm("probe"), code=405, reason="MethodNotAllowed"),
    case("put-to-collection", "PUT", CM, _cm("probe"), code=405, reason="MethodNotAllowed"),
    case("patch-collection", "PATCH", CM, {"data": {}}, content_type=MERGE_PATCH, code=405,
         reason="MethodNotAllowed"),
    case("delete-pod-status", "DELETE", f"{PODS}/x/status", code=405, reason="MethodNotAllowed"),
    case("post-pod-status", "POST", f"{PODS}/x/status", {}, code=405, reason="MethodNotAllowed"),
]

ALL_CASES = SYNTAX + SIZE + TYPES + INVALID + IDENTITY + MEDIA + PATCH + QUERY + ROUTES
