"""validate(): every rule reports its field path, reason and Kubernetes wording; all causes collected."""

import copy
from collections.abc import Callable
from typing import Any

import pytest

import machinery.api as api
from machinery.errors import InvalidError
from tests.machinery.api.manifests import NGINX_DEPLOYMENT, POD, SERVICE

Obj = dict[str, Any]


def _prepared(obj: Obj) -> Obj:
    return api.prepare(obj, api_version=obj["apiVersion"], kind=obj["kind"])[0]


def _causes(obj: Obj, old: Obj | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(InvalidError) as info:
        api.validate(obj, old=old)
    return [(c.field, c.reason, c.message) for c in info.value.causes]


def _pod(mutate: Callable[[Obj], object]) -> Obj:
    obj = _prepared(POD)
    mutate(obj)
    return obj


def _deploy(mutate: Callable[[Obj], object]) -> Obj:
    obj = _prepared(NGINX_DEPLOYMENT)
    mutate(obj)
    return obj


def _svc(mutate: Callable[[Obj], object]) -> Obj:
    obj = _prepared(SERVICE)
    mutate(obj)
    return obj


def _c(obj: Obj) -> Obj:
    return obj["spec"]["containers"][0]  # type: ignore[no-any-return]


def _tc(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


SUBDOMAIN_MSG = (
    "Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")

CASES = [
    pytest.param(_pod(lambda o: o["metadata"].update(name="Web_1")), "metadata.name", "FieldValueInvalid",
                 SUBDOMAIN_MSG, id="pod-name-subdomain"),
    pytest.param(_pod(lambda o: o["metadata"].pop("name")), "metadata.name", "FieldValueRequired",
                 "Required value: name or generateName is required", id="name-required"),
    pytest.param(_pod(lambda o: o["metadata"].pop("namespace")), "metadata.namespace", "FieldValueRequired",
                 "Required value", id="namespace-required"),
    pytest.param(_svc(lambda o: o["metadata"].update(name="1web")), "metadata.name", "FieldValueInvalid",
                 "a DNS-1035 label", id="service-name-dns1035"),
    pytest.param(_pod(lambda o: o["metadata"]["labels"].update({"bad key!": "v"})), "metadata.labels",
                 "FieldValueInvalid", "name part must consist of", id="label-key"),
    pytest.param(_pod(lambda o: o["metadata"]["labels"].update({"k": "-bad"})), "metadata.labels",
                 "FieldValueInvalid", "a valid label must be an empty string", id="label-value"),
    pytest.param(_pod(lambda o: o["metadata"].update(annotations={"a/b/c": "x"})), "metadata.annotations",
                 "FieldValueInvalid", "a qualified name must consist", id="annotation-key"),
    pytest.param(_pod(lambda o: o["metadata"].update(annotations={"big": "x" * (256 * 1024)})),
                 "metadata.annotations", "FieldValueTooLong", "Too long: must have at most 262144 bytes",
                 id="annotation-size"),
    pytest.param(_pod(lambda o: _c(o).update(name="Web")), "spec.containers[0].name", "FieldValueInvalid",
                 "a lowercase RFC 1123 label must consist", id="container-name"),
    pytest.param(_pod(lambda o: o["spec"].update(initContainers=[{"name": "web", "image": "x"}])),
                 "spec.containers[0].name", "FieldValueDuplicate", 'Duplicate value: "web"',
                 id="container-name-unique-across-init"),
    pytest.param(_pod(lambda o: _c(o).pop("image")), "spec.containers[0].image", "FieldValueRequired",
                 "Required value", id="image-required"),
    pytest.param(_pod(lambda o: o["spec"].update(containers=[])), "spec.containers", "FieldValueRequired",
                 "Required value", id="containers-required"),
    pytest.param(_pod(lambda o: _c(o)["ports"][0].update(containerPort=70000)),
                 "spec.containers[0].ports[0].containerPort", "FieldValueInvalid",
                 "Invalid value: 70000: must be between 1 and 65535, inclusive", id="container-port-range"),
    pytest.param(_pod(lambda o: _c(o)["ports"].append({"name": "http", "containerPort": 81, "protocol": "TCP"})),
                 "spec.containers[0].ports[1].name", "FieldValueDuplicate", 'Duplicate value: "http"',
                 id="port-name-unique"),
    pytest.param(_pod(lambda o: _c(o)["ports"][0].update(protocol="HTTP")),
                 "spec.containers[0].ports[0].protocol", "FieldValueNotSupported",
                 'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"', id="port-protocol"),
    pytest.param(_pod(lambda o: o["spec"]["volumes"].append({"name": "data", "emptyDir": {}})),
                 "spec.volumes[1].name", "FieldValueDuplicate", 'Duplicate value: "data"', id="volume-unique"),
    pytest.param(_pod(lambda o: _c(o)["volumeMounts"].append({"name": "nope", "mountPath": "/x"})),
                 "spec.containers[0].volumeMounts[1].name", "FieldValueNotFound", 'Not found: "nope"',
                 id="mount-unknown-volume"),
    pytest.param(_pod(lambda o: o["spec"]["volumes"][0].update(hostPath={"path": "/x"})),
                 "spec.volumes[0].emptyDir", "FieldValueForbidden",
                 "Forbidden: may not specify more than 1 volume type", id="volume-two-sources"),
    pytest.param(_pod(lambda o: _c(o)["resources"].update(requests={"cpu": "2"})),
                 "spec.containers[0].resources.requests", "FieldValueInvalid",
                 'Invalid value: "2": must be less than or equal to cpu limit of 500m', id="requests-le-limits"),
    pytest.param(_pod(lambda o: o["spec"].update(restartPolicy="Sometimes")), "spec.restartPolicy",
                 "FieldValueNotSupported", 'supported values: "Always", "OnFailure", "Never"', id="restart-policy"),
    pytest.param(_pod(lambda o: o["spec"].update(dnsPolicy="None")), "spec.dnsConfig", "FieldValueRequired",
                 "must provide `dnsConfig` when `dnsPolicy` is None", id="dns-none-needs-config"),
    pytest.param(_pod(lambda o: _c(o)["readinessProbe"].update(periodSeconds=-1)),
                 "spec.containers[0].readinessProbe.periodSeconds", "FieldValueInvalid",
                 "must be greater than or equal to 0", id="probe-negative"),
    pytest.param(_pod(lambda o: _c(o).update(livenessProbe={"successThreshold": 2, "tcpSocket": {"port": 80}})),
                 "spec.containers[0].livenessProbe.successThreshold", "FieldValueInvalid", "must be 1",
                 id="liveness-success-threshold"),
    pytest.param(_pod(lambda o: _c(o).update(startupProbe={"periodSeconds": 1})),
                 "spec.containers[0].startupProbe", "FieldValueRequired", "must specify a handler type",
                 id="probe-handler"),
    pytest.param(_pod(lambda o: o["spec"].update(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}])),
                 "spec.tolerations[0].operator", "FieldValueInvalid",
                 "value must be empty when `operator` is 'Exists'", id="toleration-exists-value"),
    pytest.param(_pod(lambda o: o["spec"].update(affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "k", "operator": "In"}]}]}}})),
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].values", "FieldValueRequired", "must be specified when `operator` is 'In'",
        id="affinity-values"),
    pytest.param(_deploy(lambda o: o["spec"].update(replicas=-1)), "spec.replicas", "FieldValueInvalid",
                 "Invalid value: -1: must be greater than or equal to 0", id="replicas-negative"),
    pytest.param(_deploy(lambda o: o["spec"]["selector"].update(matchLabels={"app": "other"})),
                 "spec.template.metadata.labels", "FieldValueInvalid",
                 "`selector` does not match template `labels`", id="selector-mismatch"),
    pytest.param(_deploy(lambda o: o["spec"].pop("selector")), "spec.selector", "FieldValueRequired",
                 "Required value", id="selector-required"),
    pytest.param(_deploy(lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Never")),
                 "spec.template.spec.restartPolicy", "FieldValueNotSupported",
                 'Unsupported value: "Never": supported values: "Always"', id="template-restart-policy"),
    pytest.param(_deploy(lambda o: _tc(o).update(name="Bad_Name")),
                 "spec.template.spec.containers[0].name", "FieldValueInvalid", "RFC 1123 label",
                 id="template-container-name"),
    pytest.param(_deploy(lambda o: o["spec"]["strategy"].update(rollingUpdate={"maxSurge": 0, "maxUnavailable": 0})),
                 "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid",
                 "may not be 0 when `maxSurge` is 0", id="rolling-both-zero"),
    pytest.param(_deploy(lambda o: o["spec"].update(progressDeadlineSeconds=5, minReadySeconds=10)),
                 "spec.progressDeadlineSeconds", "FieldValueInvalid", "must be greater than minReadySeconds",
                 id="progress-deadline"),
    pytest.param(_svc(lambda o: o["spec"]["ports"][1].pop("name")), "spec.ports[1].name", "FieldValueRequired",
                 "Required value", id="service-port-name-required"),
    pytest.param(_svc(lambda o: o["spec"]["ports"][1].update(name="http")), "spec.ports[1].name",
                 "FieldValueDuplicate", 'Duplicate value: "http"', id="service-port-name-unique"),
    pytest.param(_svc(lambda o: o["spec"]["ports"][0].pop("port")), "spec.ports[0].port", "FieldValueRequired",
                 "Required value", id="service-port-required"),
    pytest.param(_svc(lambda o: o["spec"].update(type="Magic")), "spec.type", "FieldValueNotSupported",
                 "Unsupported value", id="service-type"),
    pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
                  "data": {"bad key": "v"}}, "data[bad key]", "FieldValueInvalid", "a valid config key",
                 id="configmap-key"),
    pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
                  "data": {"k": "x" * (1024 * 1024 + 1)}}, "data", "FieldValueTooLong",
                 "must have at most 1048576 bytes", id="configmap-size"),
    pytest.param({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
                  "type": "kubernetes.io/tls", "data": {}}, "data[tls.crt]", "FieldValueRequired",
                 "Required value", id="secret-tls-keys"),
    pytest.param({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "my.ns"}}, "metadata.name",
                 "FieldValueInvalid", "RFC 1123 label", id="namespace-name-label"),
    pytest.param({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                  "metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}},
                 "spec.leaseDurationSeconds", "FieldValueInvalid", "must be greater than 0", id="lease-duration"),
    pytest.param({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}},
                 "metadata.namespace", "FieldValueForbidden", "not allowed on this type", id="cluster-scoped-ns"),
]


@pytest.mark.parametrize(("obj", "field", "reason", "message"), CASES)
def test_rule(obj: Obj, field: str, reason: str, message: str) -> None:
    causes = _causes(obj)
    assert any(f == field and r == reason and message in m for f, r, m in causes), causes


def test_all_causes_are_collected_and_message_is_kubernetes_shaped() -> None:
    obj = _deploy(lambda o: (o["spec"].update(replicas=-1), _tc(o).update(name="Bad_Name"), _tc(o).pop("image")))
    with pytest.raises(InvalidError) as info:
        api.validate(obj)
    fields = {c.field for c in info.value.causes}
    assert {"spec.replicas", "spec.template.spec.containers[0].name",
            "spec.template.spec.containers[0].image"} <= fields
    assert info.value.message.startswith('Deployment.apps "nginx" is invalid: ')
    assert info.value.group == "apps" and info.value.kind == "Deployment"


def test_generate_name_is_enough() -> None:
    obj = _pod(lambda o: (o["metadata"].pop("name"), o["metadata"].update(generateName="web-")))
    api.validate(obj)


UPDATE_CASES = [
    pytest.param(_deploy(lambda o: None), _deploy(lambda o: o["spec"]["selector"]["matchLabels"].update(x="y")),
                 "spec.selector", "field is immutable", id="deployment-selector"),
    pytest.param(_pod(lambda o: None), _pod(lambda o: _c(o)["ports"][0].update(containerPort=81)),
                 "spec", "pod updates may not change fields", id="pod-spec"),
    pytest.param(_pod(lambda o: o["spec"].update(tolerations=[{"key": "a", "operator": "Exists"}])),
                 _pod(lambda o: None), "spec", "pod updates may not change fields", id="pod-toleration-removed"),
    pytest.param(_svc(lambda o: None), _svc(lambda o: o["spec"].update(clusterIP="10.96.0.11")),
                 "spec.clusterIP", "field is immutable", id="service-clusterip"),
    pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
                  "immutable": True, "data": {"a": "1"}},
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
                  "immutable": True, "data": {"a": "2"}}, "data", "field is immutable when `immutable` is set",
                 id="configmap-immutable"),
    pytest.param({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
                  "type": "Opaque"},
                 {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
                  "type": "example.com/x"}, "type", "field is immutable", id="secret-type"),
    pytest.param(_pod(lambda o: o["metadata"].update(uid="1")), _pod(lambda o: o["metadata"].update(uid="2")),
                 "metadata.uid", "field is immutable", id="metadata-uid"),
]


@pytest.mark.parametrize(("old", "new", "field", "message"), UPDATE_CASES)
def test_update_rule(old: Obj, new: Obj, field: str, message: str) -> None:
    causes = _causes(new, old)
    assert any(f == field and message in m for f, _, m in causes), causes


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda o: _c(o).update(image="nginx:1.27"), id="image"),
    pytest.param(lambda o: o["spec"].update(activeDeadlineSeconds=30), id="active-deadline"),
    pytest.param(lambda o: o["spec"].update(tolerations=[{"key": "a", "operator": "Exists"}]),
                 id="toleration-added"),
])
def test_allowed_pod_updates(mutate: Callable[[Obj], object]) -> None:
    old = _pod(lambda o: None)
    new = copy.deepcopy(old)
    mutate(new)
    api.validate(new, old=old)
