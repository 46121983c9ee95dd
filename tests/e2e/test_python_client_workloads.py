"""The official ``kubernetes`` Python client on the workload kinds: BatchV1Api (Job, CronJob),
AppsV1Api (StatefulSet, DaemonSet, ControllerRevision) and CoreV1Api (ReplicationController).

Every answer must deserialize into the client's strict models (a new DaemonSet's or
ReplicationController's status already carries the counters Kubernetes always serializes). Runs on
both stores through ``module_cluster`` (an apiserver; no controllers are needed for these calls).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubelab.testing import RunningApiServer
from tests.e2e.pyclient import NS, client, new_client


@pytest.fixture
def api_client(module_cluster: RunningApiServer) -> Iterator[Any]:
    api = new_client(module_cluster)
    yield api
    api.close()


@pytest.fixture
def token() -> str:
    return f"w{uuid.uuid4().hex[:10]}"


def _template(labels: dict[str, str], restart: str = "Always") -> Any:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(restart_policy=restart, containers=[client.V1Container(name="c", image="busybox")]))


def _meta(name: str, token: str) -> Any:
    return client.V1ObjectMeta(name=name, labels={"run": token})


def job(name: str, token: str) -> Any:
    return client.V1Job(metadata=_meta(name, token), spec=client.V1JobSpec(
        completions=2, parallelism=1, template=_template({"app": name}, "Never")))


def cron_job(name: str, token: str) -> Any:
    return client.V1CronJob(metadata=_meta(name, token), spec=client.V1CronJobSpec(
        schedule="@hourly", job_template=client.V1JobTemplateSpec(spec=client.V1JobSpec(
            template=_template({"app": name}, "OnFailure")))))


def stateful_set(name: str, token: str) -> Any:
    return client.V1StatefulSet(metadata=_meta(name, token), spec=client.V1StatefulSetSpec(
        service_name=name, replicas=2, selector=client.V1LabelSelector(match_labels={"app": name}),
        template=_template({"app": name})))


def daemon_set(name: str, token: str) -> Any:
    return client.V1DaemonSet(metadata=_meta(name, token), spec=client.V1DaemonSetSpec(
        selector=client.V1LabelSelector(match_labels={"app": name}), template=_template({"app": name})))


def replication_controller(name: str, token: str) -> Any:
    return client.V1ReplicationController(metadata=_meta(name, token), spec=client.V1ReplicationControllerSpec(
        replicas=2, selector={"app": name}, template=_template({"app": name})))


@dataclass(frozen=True)
class Kind:
    api: Callable[[Any], Any]
    stem: str
    model: Any
    body: Callable[[str, str], Any]

    def call(self, api_client: Any, verb: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.api(api_client), f"{verb}_namespaced_{self.stem}")
        if verb in ("create", "list"):
            return method(NS, *args, **kwargs)
        name, *rest = args
        return method(name, NS, *rest, **kwargs)


KINDS = [
    pytest.param(Kind(client.BatchV1Api, "job", client.V1Job, job), id="job"),
    pytest.param(Kind(client.BatchV1Api, "cron_job", client.V1CronJob, cron_job), id="cronjob"),
    pytest.param(Kind(client.AppsV1Api, "stateful_set", client.V1StatefulSet, stateful_set), id="statefulset"),
    pytest.param(Kind(client.AppsV1Api, "daemon_set", client.V1DaemonSet, daemon_set), id="daemonset"),
    pytest.param(Kind(client.CoreV1Api, "replication_controller", client.V1ReplicationController,
                      replication_controller), id="replicationcontroller"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_crud_with_typed_answers(kind: Kind, api_client: Any, token: str) -> None:
    name = f"{token}-a"
    created = kind.call(api_client, "create", kind.body(name, token))
    assert isinstance(created, kind.model) and created.metadata.uid
    read = kind.call(api_client, "read", name)
    assert isinstance(read, kind.model) and read.metadata.resource_version == created.metadata.resource_version
    assert read.metadata.generation == 1
    listed = kind.call(api_client, "list", label_selector=f"run={token}")
    assert [i.metadata.name for i in listed.items] == [name]
    patched = kind.call(api_client, "patch", name, {"metadata": {"labels": {"patched": "yes"}}})
    assert patched.metadata.labels["patched"] == "yes"
    read_status = getattr(kind.api(api_client), f"read_namespaced_{kind.stem}_status")(name, NS)
    assert isinstance(read_status, kind.model)
    kind.call(api_client, "delete", name)
    with pytest.raises(ApiException) as err:
        kind.call(api_client, "read", name)
    assert err.value.status == 404


def test_job_gets_its_generated_selector_and_defaults(api_client: Any, token: str) -> None:
    batch = client.BatchV1Api(api_client)
    created = batch.create_namespaced_job(NS, job(f"{token}-j", token))
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    labels = created.spec.template.metadata.labels
    assert labels["batch.kubernetes.io/job-name"] == f"{token}-j" and labels["controller-uid"] == uid
    assert (created.spec.backoff_limit, created.spec.completion_mode, created.spec.suspend) == (6, "NonIndexed", False)


def test_bad_job_and_cronjob_are_refused_with_kubernetes_messages(api_client: Any, token: str) -> None:
    batch = client.BatchV1Api(api_client)
    bad = job(f"{token}-bad", token)
    bad.spec.template.spec.restart_policy = "Always"
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job(NS, bad)
    assert err.value.status == 422
    assert 'Unsupported value: "Always": supported values: "OnFailure", "Never"' in _message(err.value)
    cron = cron_job(f"{token}-cj", token)
    cron.spec.schedule = "not a schedule"
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_cron_job(NS, cron)
    assert err.value.status == 422 and 'spec.schedule: Invalid value: "not a schedule"' in _message(err.value)


def _message(exc: ApiException) -> str:
    return str(json.loads(exc.body or "{}").get("message", ""))


@pytest.mark.parametrize(("api", "stem", "body"), [
    pytest.param(client.AppsV1Api, "stateful_set", stateful_set, id="statefulset"),
    pytest.param(client.CoreV1Api, "replication_controller", replication_controller, id="replicationcontroller"),
])
def test_scale_subresource(api: Any, stem: str, body: Callable[[str, str], Any], api_client: Any,
                           token: str) -> None:
    name = f"{token}-s"
    target = api(api_client)
    getattr(target, f"create_namespaced_{stem}")(NS, body(name, token))
    scale = getattr(target, f"read_namespaced_{stem}_scale")(name, NS)
    assert isinstance(scale, client.V1Scale) and scale.spec.replicas == 2
    assert scale.status.selector == f"app={name}"
    getattr(target, f"patch_namespaced_{stem}_scale")(name, NS, {"spec": {"replicas": 5}})
    assert getattr(target, f"read_namespaced_{stem}")(name, NS).spec.replicas == 5


def test_controller_revisions_are_served(api_client: Any, token: str) -> None:
    apps = client.AppsV1Api(api_client)
    revision = client.V1ControllerRevision(metadata=_meta(f"{token}-r", token), revision=1,
                                           data={"spec": {"template": {"$patch": "replace"}}})
    created = apps.create_namespaced_controller_revision(NS, revision)
    assert isinstance(created, client.V1ControllerRevision) and created.revision == 1
    listed = apps.list_namespaced_controller_revision(NS, label_selector=f"run={token}")
    assert [r.metadata.name for r in listed.items] == [f"{token}-r"]
