"""prepare(): decoding (unknown fields, type errors), defaulting, no mutation of the input."""

import copy
from typing import Any

import pytest

import machinery.api as api
from machinery.errors import BadRequestError
from tests.machinery.api.manifests import EVENT, LEASE, NGINX_DEPLOYMENT, NODE, POD, POD_STATUS, SERVICE


def _prep(obj: dict[str, Any], fv: str = "Strict") -> tuple[dict[str, Any], list[str]]:
    return api.prepare(obj, api_version=obj["apiVersion"], kind=obj["kind"], field_validation=fv)


def _subset(expected: Any, actual: Any) -> bool:
    """Every field of ``expected`` is in ``actual`` unchanged (defaults may add more)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            _subset(v, actual.get(k)) for k, v in expected.items() if v is not None)
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            _subset(e, a) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, int | float) and not isinstance(expected, bool) and isinstance(actual, str):
        return str(expected) == actual  # quantities given as numbers come back as strings
    return bool(expected == actual)


@pytest.mark.parametrize("manifest", [
    pytest.param(NGINX_DEPLOYMENT, id="nginx-deployment"),
    pytest.param(POD, id="pod"),
    pytest.param({**POD, "status": POD_STATUS}, id="pod-with-status"),
    pytest.param(SERVICE, id="service"),
    pytest.param(NODE, id="node"),
    pytest.param(EVENT, id="event"),
    pytest.param(LEASE, id="lease"),
])
def test_realistic_manifests_pass_unchanged_apart_from_defaults(manifest: dict[str, Any]) -> None:
    before = copy.deepcopy(manifest)
    out, warnings = _prep(manifest)
    assert warnings == []
    assert manifest == before, "input was mutated"
    assert _subset(manifest, out)
    assert out["metadata"].get("annotations") == manifest["metadata"].get("annotations")
    api.validate(out)


def test_null_fields_are_dropped_and_no_nulls_added() -> None:
    out, _ = _prep({**POD, "status": POD_STATUS})
    assert "lastProbeTime" not in out["status"]["conditions"][0]
    assert "None" not in repr(out) and "null" not in repr(out)


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else obj[part]
    return obj


POD_MIN: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                    "ports": [{"containerPort": 80}],
                                    "livenessProbe": {"httpGet": {"port": 80}},
                                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
                                   {"name": "d", "image": "nginx"}, {"name": "e", "image": "nginx:latest"},
                                   {"name": "f", "image": "reg:5000/nginx"}],
                    "volumes": [{"name": "a", "secret": {"secretName": "s"}},
                                {"name": "b", "configMap": {"name": "c"}}, {"name": "x"},
                                {"name": "h", "hostPath": {"path": "/tmp"}}]}}
DEPLOY_MIN: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "d", "namespace": "n"},
              "spec": {"selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}
SVC_MIN: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"},
           "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}


@pytest.mark.parametrize(("obj", "path", "value"), [
    pytest.param(POD_MIN, "spec.restartPolicy", "Always", id="pod-restartPolicy"),
    pytest.param(POD_MIN, "spec.dnsPolicy", "ClusterFirst", id="pod-dnsPolicy"),
    pytest.param(POD_MIN, "spec.schedulerName", "default-scheduler", id="pod-schedulerName"),
    pytest.param(POD_MIN, "spec.terminationGracePeriodSeconds", 30, id="pod-grace"),
    pytest.param(POD_MIN, "spec.securityContext", {}, id="pod-securityContext"),
    pytest.param(POD_MIN, "spec.enableServiceLinks", True, id="pod-enableServiceLinks"),
    pytest.param(POD_MIN, "spec.containers.0.terminationMessagePath", "/dev/termination-log", id="tmpath"),
    pytest.param(POD_MIN, "spec.containers.0.terminationMessagePolicy", "File", id="tmpolicy"),
    pytest.param(POD_MIN, "spec.containers.0.imagePullPolicy", "IfNotPresent", id="pull-tagged"),
    pytest.param(POD_MIN, "spec.containers.1.imagePullPolicy", "Always", id="pull-untagged"),
    pytest.param(POD_MIN, "spec.containers.2.imagePullPolicy", "Always", id="pull-latest"),
    pytest.param(POD_MIN, "spec.containers.3.imagePullPolicy", "Always", id="pull-registry-port"),
    pytest.param(POD_MIN, "spec.containers.0.ports.0.protocol", "TCP", id="port-protocol"),
    pytest.param(POD_MIN, "spec.containers.0.livenessProbe.timeoutSeconds", 1, id="probe-timeout"),
    pytest.param(POD_MIN, "spec.containers.0.livenessProbe.periodSeconds", 10, id="probe-period"),
    pytest.param(POD_MIN, "spec.containers.0.livenessProbe.successThreshold", 1, id="probe-success"),
    pytest.param(POD_MIN, "spec.containers.0.livenessProbe.failureThreshold", 3, id="probe-failure"),
    pytest.param(POD_MIN, "spec.containers.0.livenessProbe.httpGet.path", "/", id="probe-path"),
    pytest.param(POD_MIN, "spec.containers.0.livenessProbe.httpGet.scheme", "HTTP", id="probe-scheme"),
    pytest.param(POD_MIN, "spec.containers.0.env.0.valueFrom.fieldRef.apiVersion", "v1", id="fieldref-version"),
    pytest.param(POD_MIN, "spec.volumes.0.secret.defaultMode", 420, id="secret-mode"),
    pytest.param(POD_MIN, "spec.volumes.1.configMap.defaultMode", 420, id="configmap-mode"),
    pytest.param(POD_MIN, "spec.volumes.2.emptyDir", {}, id="volume-emptydir"),
    pytest.param(POD_MIN, "spec.volumes.3.hostPath.type", "", id="hostpath-type"),
    pytest.param(DEPLOY_MIN, "spec.replicas", 1, id="deploy-replicas"),
    pytest.param(DEPLOY_MIN, "spec.strategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                 id="deploy-strategy"),
    pytest.param(DEPLOY_MIN, "spec.revisionHistoryLimit", 10, id="deploy-history"),
    pytest.param(DEPLOY_MIN, "spec.progressDeadlineSeconds", 600, id="deploy-deadline"),
    pytest.param(DEPLOY_MIN, "spec.template.spec.restartPolicy", "Always", id="deploy-template"),
    pytest.param({**DEPLOY_MIN, "kind": "ReplicaSet"}, "spec.replicas", 1, id="rs-replicas"),
    pytest.param(SVC_MIN, "spec.type", "ClusterIP", id="svc-type"),
    pytest.param(SVC_MIN, "spec.sessionAffinity", "None", id="svc-affinity"),
    pytest.param(SVC_MIN, "spec.ports.0.protocol", "TCP", id="svc-protocol"),
    pytest.param(SVC_MIN, "spec.ports.0.targetPort", 80, id="svc-targetPort"),
    pytest.param(SVC_MIN, "spec.internalTrafficPolicy", "Cluster", id="svc-internal-policy"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}},
                 "spec.finalizers", ["kubernetes"], id="ns-finalizers"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}},
                 "status.phase", "Active", id="ns-phase"),
    pytest.param({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, "type", "Opaque",
                 id="secret-type"),
    pytest.param({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                  "status": {"capacity": {"cpu": "2"}}}, "status.allocatable", {"cpu": "2"},
                 id="node-allocatable"),
])
def test_defaults(obj: dict[str, Any], path: str, value: Any) -> None:
    out, _ = _prep(obj)
    assert _get(out, path) == value
    assert out["apiVersion"] == obj["apiVersion"] and out["kind"] == obj["kind"]


def test_defaults_do_not_override_given_values() -> None:
    out, _ = _prep(NGINX_DEPLOYMENT)
    assert out["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": "50%"}
    assert out["spec"]["template"]["spec"]["volumes"][2]["secret"]["defaultMode"] == 256


def test_limits_become_requests_when_unset() -> None:
    out, _ = _prep(POD)
    assert out["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "128Mi"}


def _with_unknown() -> dict[str, Any]:
    obj = copy.deepcopy(DEPLOY_MIN)
    obj["spec"]["foo"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["bar"] = {"x": 1}
    obj["metadata"]["bogus"] = "x"
    return obj


def test_strict_names_every_unknown_field() -> None:
    with pytest.raises(BadRequestError) as info:
        _prep(_with_unknown(), "Strict")
    msg = info.value.message
    assert "strict decoding error: " in msg
    for path in ("spec.foo", "spec.template.spec.containers[0].bar", "metadata.bogus"):
        assert f'unknown field "{path}"' in msg


@pytest.mark.parametrize(("mode", "warnings"), [
    pytest.param("Warn", ['unknown field "metadata.bogus"', 'unknown field "spec.foo"',
                          'unknown field "spec.template.spec.containers[0].bar"'], id="warn"),
    pytest.param("Ignore", [], id="ignore"),
])
def test_warn_and_ignore_drop_unknown_fields(mode: str, warnings: list[str]) -> None:
    obj = _with_unknown()
    before = copy.deepcopy(obj)
    out, got = _prep(obj, mode)
    assert sorted(got) == warnings
    assert "foo" not in out["spec"] and "bar" not in out["spec"]["template"]["spec"]["containers"][0]
    assert "bogus" not in out["metadata"]
    assert obj == before


@pytest.mark.parametrize(("patch", "expected"), [
    pytest.param({"spec": {"replicas": "3"}},
                 "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
                 id="string-for-int"),
    pytest.param({"metadata": {"labels": ["a"]}},
                 "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels "
                 "of type map[string]string", id="list-for-map"),
    pytest.param({"metadata": {"labels": {"a": 1}}},
                 "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
                 id="number-label"),
    pytest.param({"spec": {"paused": "yes"}},
                 "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool",
                 id="string-for-bool"),
    pytest.param({"spec": {"selector": "app=x"}},
                 "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.selector "
                 "of type v1.LabelSelector", id="string-for-struct"),
    pytest.param({"spec": {"strategy": {"rollingUpdate": {"maxSurge": [1]}}}},
                 "Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge "
                 "of type intstr.IntOrString", id="int-or-string"),
    pytest.param({"metadata": {"creationTimestamp": "yesterday"}}, 'parsing time "yesterday"', id="time"),
])
def test_type_errors_name_the_field(patch: dict[str, Any], expected: str) -> None:
    obj = copy.deepcopy(DEPLOY_MIN)
    for key, value in patch.items():
        obj[key] = {**obj[key], **value}
    with pytest.raises(BadRequestError) as info:
        _prep(obj)
    assert expected in info.value.message
    assert info.value.message.startswith('Deployment in version "v1" cannot be handled as a Deployment: ')


def test_nested_list_type_error_path_has_no_indices() -> None:
    obj = copy.deepcopy(DEPLOY_MIN)
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "80"}]
    with pytest.raises(BadRequestError, match=r"Go struct field ContainerPort\.spec\.template\.spec\."
                                              r"containers\.ports\.containerPort of type int32"):
        _prep(obj)


@pytest.mark.parametrize(("value", "ok"), [
    pytest.param("100m", True, id="milli"), pytest.param("1.5Gi", True, id="binary"),
    pytest.param(2, True, id="int"), pytest.param("1e3", True, id="exponent"),
    pytest.param("abc", False, id="letters"), pytest.param("1 Gi", False, id="space"),
    pytest.param(True, False, id="bool"),
])
def test_quantity_syntax(value: Any, ok: bool) -> None:
    obj = copy.deepcopy(POD)
    obj["spec"]["containers"][0]["resources"] = {"limits": {"cpu": value}}
    if ok:
        out, _ = _prep(obj)
        assert out["spec"]["containers"][0]["resources"]["limits"]["cpu"] == str(value)
    else:
        with pytest.raises(BadRequestError, match="quantities must match the regular expression"):
            _prep(obj)


def test_secret_data_must_be_base64() -> None:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
           "data": {"ok": "aGVsbG8=", "bad": "not base64!"}}
    with pytest.raises(BadRequestError, match="illegal base64 data"):
        _prep(obj)


def test_unknown_kind_and_field_validation_value() -> None:
    with pytest.raises(BadRequestError, match='no kind "Widget"'):
        api.prepare({}, api_version="v1", kind="Widget")
    with pytest.raises(BadRequestError, match="fieldValidation"):
        api.prepare(POD, api_version="v1", kind="Pod", field_validation="Loud")


def test_model_for() -> None:
    model = api.model_for("apps/v1", "Deployment")
    assert model is not None and model.__name__ == "Deployment"
    assert api.model_for("policy/v1", "Eviction") is not None
    assert api.model_for("v1", "Deployment") is None
