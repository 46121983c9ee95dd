"""Storage on real Docker containers (``kubelab up --nodes 2``) through the real kubectl and the
official Python client: a claim of the default ``local-path`` class is provisioned on the node of its
first consumer; data written by one pod is read by the next pod (which lands on the same node) and
by a Deployment's replacement pod; deleting a claim of the ``Delete`` class removes its volume and
the directory on the host, a ``Retain`` class keeps both; ``kubectl get pv,pvc,sc`` prints
Kubernetes' columns; a claim of a missing class stays Pending with Kubernetes' event and an invalid
access mode gets Kubernetes' 422."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from kubelab.images import BUSYBOX, ensure_images
from tests.e2e.docker_harness import DockerCluster, running_cluster
from tests.e2e.pyclient import client, new_client_from_config

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]

NS = "storage"


def claim(name: str, extra: str = "") -> str:
    return f"""\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: {NS}}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
{extra}"""


def pod(name: str, claim_name: str, command: str) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {NS}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    command: ["sh", "-c", "{command}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim_name}}}
"""


DEPLOYMENT = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: counter, namespace: {NS}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: counter}}}}
  template:
    metadata: {{labels: {{app: counter}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {BUSYBOX}
        command: ["sh", "-c", "echo $(hostname) >> /data/starts && exec sleep 3600"]
        volumeMounts: [{{name: data, mountPath: /data}}]
      volumes:
      - name: data
        persistentVolumeClaim: {{claimName: counter}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox"])
    with running_cluster(tmp_path_factory.mktemp("docker-storage"), docker_client, "--nodes", "2") as c:
        c.kubectl("create", "namespace", NS)
        yield c


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def field(cluster: DockerCluster, *args: str, path: str) -> str:
    return cluster.kubectl("-n", NS, "get", *args, "-o", f"jsonpath={path}").stdout


def ready(cluster: DockerCluster, name: str) -> None:
    cluster.kubectl("-n", NS, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s", timeout=100)


def volume_of(cluster: DockerCluster, claim_name: str) -> dict[str, Any]:
    name = field(cluster, "pvc", claim_name, path="{.spec.volumeName}")
    assert name, f"claim {claim_name} is not bound"
    pv: dict[str, Any] = cluster.json("get", "pv", name)
    return pv


def test_data_survives_the_pod_and_the_next_pod_lands_on_the_same_node(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=claim("notes"))
    assert field(cluster, "pvc", "notes", path="{.spec.storageClassName}") == "local-path"
    wait_for("the WaitForFirstConsumer event", lambda: "WaitForFirstConsumer" in cluster.kubectl(
        "-n", NS, "describe", "pvc", "notes").stdout)
    assert field(cluster, "pvc", "notes", path="{.status.phase}") == "Pending", "bound before any consumer"

    cluster.kubectl("apply", "-f", "-", input=pod("writer", "notes", "echo kept-across-pods > /data/msg && sleep 3600"))
    ready(cluster, "writer")
    node = field(cluster, "pod", "writer", path="{.spec.nodeName}")
    assert field(cluster, "pvc", "notes", path="{.status.phase}") == "Bound"
    pv = volume_of(cluster, "notes")
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [node], "the volume is not pinned to the writer's node"
    host_dir = Path(pv["spec"]["hostPath"]["path"])
    assert host_dir.parent == cluster.state_dir / "storage"
    assert host_dir.name == f"{pv['metadata']['name']}_{NS}_notes"
    assert (host_dir / "msg").read_text() == "kept-across-pods\n"

    cluster.kubectl("-n", NS, "delete", "pod", "writer", "--wait=true", timeout=100)
    cluster.kubectl("apply", "-f", "-", input=pod("reader", "notes", "sleep 3600"))
    ready(cluster, "reader")
    assert field(cluster, "pod", "reader", path="{.spec.nodeName}") == node
    assert cluster.kubectl("-n", NS, "exec", "reader", "--", "cat", "/data/msg").stdout == "kept-across-pods\n"


def test_deployment_replacement_pod_sees_the_previous_pods_data(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=claim("counter") + "---\n" + DEPLOYMENT)
    cluster.kubectl("-n", NS, "rollout", "status", "deploy/counter", "--timeout=90s", timeout=100)
    first = field(cluster, "pods", "-l", "app=counter", path="{.items[0].metadata.name}")
    cluster.kubectl("-n", NS, "delete", "pod", first, "--wait=true", timeout=100)

    def second_started() -> bool:
        names = field(cluster, "pods", "-l", "app=counter", path="{.items[*].metadata.name}").split()
        if len(names) != 1 or names[0] == first:
            return False
        out = cluster.kubectl("-n", NS, "exec", names[0], "--", "cat", "/data/starts", check=False)
        return out.returncode == 0 and len(out.stdout.split()) == 2

    wait_for("the replacement pod", second_started)
    second = field(cluster, "pods", "-l", "app=counter", path="{.items[0].metadata.name}")
    starts = cluster.kubectl("-n", NS, "exec", second, "--", "cat", "/data/starts").stdout.split()
    assert starts == [first, second]


def test_deleting_a_delete_class_claim_removes_volume_and_directory(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=claim("scratch") + "---\n" + pod("scratcher", "scratch",
                                                                                "echo x > /data/x && sleep 3600"))
    ready(cluster, "scratcher")
    pv = volume_of(cluster, "scratch")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    host_dir = Path(pv["spec"]["hostPath"]["path"])
    wait_for("the file on the host", lambda: (host_dir / "x").exists())

    cluster.kubectl("-n", NS, "delete", "pvc", "scratch", "--wait=false")
    assert field(cluster, "pvc", "scratch", path="{.metadata.deletionTimestamp}"), "in use: kept by pvc-protection"
    assert (host_dir / "x").exists()
    cluster.kubectl("-n", NS, "delete", "pod", "scratcher", "--wait=true", timeout=100)
    name = pv["metadata"]["name"]
    wait_for("the volume's deletion", lambda: cluster.kubectl("get", "pv", name, check=False).returncode != 0)
    assert not host_dir.exists()
    assert cluster.kubectl("-n", NS, "get", "pvc", "scratch", check=False).returncode != 0


def test_retain_class_keeps_a_released_volume_and_its_directory(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: keep}
provisioner: rancher.io/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
""")
    cluster.kubectl("apply", "-f", "-", input=claim("kept", "  storageClassName: keep\n") + "---\n" + pod(
        "keeper", "kept", "echo y > /data/y && sleep 3600"))
    ready(cluster, "keeper")
    pv = volume_of(cluster, "kept")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    host_dir, name = Path(pv["spec"]["hostPath"]["path"]), pv["metadata"]["name"]
    cluster.kubectl("-n", NS, "delete", "pod", "keeper", "--wait=true", timeout=100)
    cluster.kubectl("-n", NS, "delete", "pvc", "kept", "--wait=true", timeout=100)
    wait_for("the volume to be Released", lambda: field(cluster, "pv", name, path="{.status.phase}") == "Released")
    assert (host_dir / "y").read_text() == "y\n"
    cluster.kubectl("delete", "pv", name, "--wait=true", timeout=100)
    assert host_dir.exists(), "a Retain volume's data outlives its PersistentVolume"


def test_kubectl_get_pv_pvc_sc_prints_kubernetes_columns(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=claim("listed") + "---\n" + pod("lister", "listed", "sleep 3600"))
    ready(cluster, "lister")
    out = cluster.kubectl("-n", NS, "get", "pv,pvc,sc").stdout
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    pv_block = next(b for b in blocks if "RECLAIM POLICY" in b[0])
    assert pv_block[0].split()[:9] == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS",
                                       "CLAIM", "STORAGECLASS"]
    pv_row = next(r.split() for r in pv_block[1:] if f"{NS}/listed" in r)
    assert pv_row[0].startswith("persistentvolume/pvc-") and pv_row[1:5] == ["64Mi", "RWO", "Delete", "Bound"]
    assert pv_row[5:7] == [f"{NS}/listed", "local-path"]

    pvc_block = next(b for b in blocks if b[0].split()[:2] == ["NAME", "STATUS"] and "VOLUME" in b[0])
    assert pvc_block[0].split()[:7] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS"]
    pvc_row = next(r.split() for r in pvc_block[1:] if r.startswith("persistentvolumeclaim/listed "))
    assert pvc_row[1] == "Bound" and pvc_row[2].startswith("pvc-") and pvc_row[3:6] == ["64Mi", "RWO", "local-path"]

    sc_block = next(b for b in blocks if "PROVISIONER" in b[0])
    assert sc_block[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                                   "ALLOWVOLUMEEXPANSION", "AGE"]
    sc_row = next(r.split() for r in sc_block[1:] if r.startswith("storageclass.storage.k8s.io/local-path "))
    assert sc_row[:6] == ["storageclass.storage.k8s.io/local-path", "(default)",
                          "rancher.io/local-path", "Delete", "WaitForFirstConsumer", "false"]


def test_python_client_claims_and_storage_classes(cluster: DockerCluster) -> None:
    api: Any = new_client_from_config(config_file=str(cluster.kubeconfig))
    core = client.CoreV1Api(api)
    resources = client.V1VolumeResourceRequirements(requests={"storage": "1Gi"})
    body = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="from-python"),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"], resources=resources))
    created = core.create_namespaced_persistent_volume_claim(NS, body)
    assert created.spec.storage_class_name == "local-path" and created.status.phase == "Pending"
    read = core.read_namespaced_persistent_volume_claim("from-python", NS)
    assert read.metadata.uid == created.metadata.uid and read.spec.resources.requests == {"storage": "1Gi"}
    wait_for("the pvc-protection finalizer", lambda: "kubernetes.io/pvc-protection" in (
        core.read_namespaced_persistent_volume_claim("from-python", NS).metadata.finalizers or []))
    core.delete_namespaced_persistent_volume_claim("from-python", NS)
    wait_for("the claim's deletion", lambda: "from-python" not in
             [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(NS).items])

    classes = client.StorageV1Api(api).list_storage_class().items
    local = next(c for c in classes if c.metadata.name == "local-path")
    assert local.provisioner == "rancher.io/local-path" and local.reclaim_policy == "Delete"
    assert local.volume_binding_mode == "WaitForFirstConsumer"
    assert local.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"


def test_claim_of_a_missing_class_stays_pending_with_the_event(cluster: DockerCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=claim("orphan", "  storageClassName: no-such-class\n"))
    wait_for("the ProvisioningFailed event", lambda: "ProvisioningFailed" in cluster.kubectl(
        "-n", NS, "describe", "pvc", "orphan").stdout)
    out = cluster.kubectl("-n", NS, "describe", "pvc", "orphan").stdout
    assert 'storageclass.storage.k8s.io "no-such-class" not found' in out
    assert field(cluster, "pvc", "orphan", path="{.status.phase}") == "Pending"


def test_invalid_access_mode_is_refused_with_kubernetes_message(cluster: DockerCluster) -> None:
    bad = claim("bad-mode").replace("[ReadWriteOnce]", "[ReadWriteSometimes]")
    out = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert out.returncode != 0
    assert 'The PersistentVolumeClaim "bad-mode" is invalid: spec.accessModes: Unsupported value: ' \
           '"ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", ' \
           '"ReadWriteOncePod"' in out.stderr, out.stderr
    api: Any = new_client_from_config(config_file=str(cluster.kubeconfig))
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api).create_namespaced_persistent_volume_claim(NS, {
            "metadata": {"name": "bad-mode"},
            "spec": {"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "1Gi"}}}})
    assert raised.value.status == 422
