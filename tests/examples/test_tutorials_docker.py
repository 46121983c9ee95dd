"""The kubernetes.io tutorials of ``examples/tutorials`` (Kubernetes Basics, Run a Stateless
Application Using a Deployment, Connecting Applications with Services, Declare Network Policy, and
the CronJob tutorial's "going further" commands) on real Docker containers, driven by the real
kubectl with the commands of each README: each test checks what the tutorial says you observe.
One ``kubelab up --nodes 2`` cluster serves the module; the tutorials use distinct names."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from kubelab.images import ensure_images
from kubelab.testing import kubectl_binary
from tests.e2e.docker_harness import DockerCluster, running_cluster

pytestmark = [pytest.mark.docker, pytest.mark.kubectl, pytest.mark.slow]
TUTORIALS = Path(__file__).resolve().parents[2] / "examples" / "tutorials"
BOOTCAMP = "kubelab/kubernetes-bootcamp"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient) -> Iterator[DockerCluster]:
    ensure_images(docker_client, ["busybox", "python", "nginx"])
    for version in ("1", "2"):  # the README's docker build commands
        docker_client.images.build(path=str(TUTORIALS / "basics" / "bootcamp"), tag=f"{BOOTCAMP}:v{version}",
                                   buildargs={"VERSION": version}, rm=True, pull=False)
    with running_cluster(tmp_path_factory.mktemp("tutorials"), docker_client, "--nodes", "2") as c:
        yield c


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


def names(cluster: DockerCluster, selector: str) -> list[str]:
    return cluster.kubectl("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}").stdout.split()


def pod_images(cluster: DockerCluster, selector: str) -> list[str]:
    """The ``Image:`` lines of ``kubectl describe pods -l SELECTOR``."""
    out = cluster.kubectl("describe", "pods", "-l", selector).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("Image:")]


def node_ip(cluster: DockerCluster) -> str:
    return cluster.kubectl("get", "nodes", "-o",
                           'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}').stdout


def test_kubernetes_basics(cluster: DockerCluster) -> None:
    k = cluster.kubectl
    # 1. create a Deployment, reach the pod through kubectl proxy
    k("create", "deployment", "kubernetes-bootcamp", f"--image={BOOTCAMP}:v1")
    k("rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=90s", timeout=100)
    row = k("get", "deployments").stdout.splitlines()[1].split()
    assert row[:2] == ["kubernetes-bootcamp", "1/1"]
    pod = k("get", "pods", "-o", "go-template", "--template",
            '{{range .items}}{{.metadata.name}}{{"\\n"}}{{end}}').stdout.strip()
    assert pod.startswith("kubernetes-bootcamp-")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proxy = subprocess.Popen([str(kubectl_binary()), "proxy", "--port=0",
                              f"--cache-dir={cluster.state_dir / 'kc-proxy'}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proxy.stdout is not None
    try:
        port = int(proxy.stdout.readline().rsplit(":", 1)[1])
        assert '"major"' in get(f"http://127.0.0.1:{port}/version")
        answer = get(f"http://127.0.0.1:{port}/api/v1/namespaces/default/pods/{pod}:8080/proxy/")
        assert answer == f"Hello Kubernetes bootcamp! | Running on: {pod} | v=1\n"
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)

    # 2. explore: describe, logs, env, a command inside the container
    assert f"Image:          {BOOTCAMP}:v1" in k("describe", "pods").stdout
    assert f"Running On: {pod} | Total Requests: 1" in k("logs", pod).stdout
    assert f"HOSTNAME={pod}" in k("exec", pod, "--", "env").stdout
    inside = k("exec", pod, "--", "python3", "-c",
               'import urllib.request; print(urllib.request.urlopen("http://localhost:8080").read().decode())')
    assert "Hello Kubernetes bootcamp!" in inside.stdout

    # 3. expose with a NodePort Service; labels; deleting the Service closes the way in
    k("expose", "deployment/kubernetes-bootcamp", "--type=NodePort", "--port", "8080")
    node_port = k("get", "services/kubernetes-bootcamp", "-o", "go-template={{(index .spec.ports 0).nodePort}}").stdout
    assert 30000 <= int(node_port) <= 32767
    assert "Type:                     NodePort" in k("describe", "services/kubernetes-bootcamp").stdout
    url = f"http://{node_ip(cluster)}:{node_port}"
    wait_for("the NodePort", lambda: _answers(url))
    assert get(url) == f"Hello Kubernetes bootcamp! | Running on: {pod} | v=1\n"
    k("label", "pods", pod, "version=v1")
    assert names(cluster, "version=v1") == [pod]
    k("delete", "service", "-l", "app=kubernetes-bootcamp")
    wait_for("the NodePort to close", lambda: not _answers(url))
    assert "Hello Kubernetes bootcamp!" in k("exec", pod, "--", "python3", "-c", inside.args[-1]).stdout

    # 4. scale to 4: several pods answer on the NodePort; back to 2
    k("expose", "deployment/kubernetes-bootcamp", "--type=NodePort", "--port", "8080")
    node_port = k("get", "services/kubernetes-bootcamp", "-o", "go-template={{(index .spec.ports 0).nodePort}}").stdout
    url = f"http://{node_ip(cluster)}:{node_port}"
    k("scale", "deployments/kubernetes-bootcamp", "--replicas=4")
    k("rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=90s", timeout=100)
    assert k("get", "deployments").stdout.splitlines()[1].split()[1] == "4/4"
    wait_for("the NodePort", lambda: _answers(url))
    seen: set[str] = set()  # the pods have no readiness probe: a new one may not listen yet when it is Ready

    def several_pods_answer() -> bool:
        seen.update(a.split(" | ")[1] for a in (_answer(url) for _ in range(10)) if a)
        return len(seen) > 1

    wait_for("answers from several pods", several_pods_answer)
    assert seen <= {f"Running on: {n}" for n in names(cluster, "app=kubernetes-bootcamp")}
    k("scale", "deployments/kubernetes-bootcamp", "--replicas=2")
    wait_for("two pods", lambda: len(names(cluster, "app=kubernetes-bootcamp")) == 2)

    # 5. rolling update to v2, a broken v10, rollout undo
    k("set", "image", "deployments/kubernetes-bootcamp", f"kubernetes-bootcamp={BOOTCAMP}:v2")
    k("rollout", "status", "deployments/kubernetes-bootcamp", "--timeout=90s", timeout=100)
    wait_for("v=2 on the NodePort", lambda: all(_answer(url).endswith("| v=2\n") for _ in range(10)))
    k("set", "image", "deployments/kubernetes-bootcamp", f"kubernetes-bootcamp={BOOTCAMP}:v10")
    wait_for("the failed pull", lambda: any(
        reason in k("get", "pods").stdout for reason in ("ErrImagePull", "ImagePullBackOff")))
    assert get(url).endswith("| v=2\n"), "the old pods kept serving"
    k("rollout", "undo", "deployments/kubernetes-bootcamp")
    k("rollout", "status", "deployments/kubernetes-bootcamp", "--timeout=90s", timeout=100)
    wait_for("only v2 pods", lambda: pod_images(cluster, "app=kubernetes-bootcamp") == [f"{BOOTCAMP}:v2"] * 2)

    # 6. clean up
    k("delete", "deployments/kubernetes-bootcamp", "services/kubernetes-bootcamp")
    wait_for("the pods to go", lambda: not names(cluster, "app=kubernetes-bootcamp"))


def _answer(url: str) -> str:
    """The body at ``url``, or "" when the connection fails (a pod leaving the Service meanwhile)."""
    try:
        return get(url)
    except (urllib.error.URLError, OSError):
        return ""


def _answers(url: str) -> bool:
    return _answer(url) != ""


def test_run_a_stateless_application(cluster: DockerCluster) -> None:
    k, lab = cluster.kubectl, TUTORIALS / "stateless"
    k("apply", "-f", str(lab / "deployment.yaml"))
    k("rollout", "status", "deployment/nginx-deployment", "--timeout=90s", timeout=100)
    described = k("describe", "deployment", "nginx-deployment").stdout
    assert "2 desired | 2 updated | 2 total | 2 available | 0 unavailable" in described
    assert "Image:         kubelab/nginx:1.22" in described and "Port:          80/TCP" in described
    first = names(cluster, "app=nginx")
    assert len(first) == 2 and all(n.startswith("nginx-deployment-") for n in first)
    assert "Status:           Running" in k("describe", "pod", first[0]).stdout
    ip = k("get", "pod", first[0], "-o", "jsonpath={.status.podIP}").stdout
    assert "Welcome to nginx" in get(f"http://{ip}/"), "nginx serves its page"

    k("apply", "-f", str(lab / "deployment-update.yaml"))
    k("rollout", "status", "deployment/nginx-deployment", "--timeout=90s", timeout=100)
    wait_for("the old pods to go", lambda: not set(first) & set(names(cluster, "app=nginx")))
    assert len(names(cluster, "app=nginx")) == 2
    requests = [line.split()[1] for line in k("describe", "pods", "-l", "app=nginx").stdout.splitlines()
                if line.strip().startswith(("cpu:", "memory:"))]
    assert requests == ["50m", "32Mi"] * 2
    history = k("rollout", "history", "deployment/nginx-deployment").stdout.split()
    assert history[history.index("REVISION") + 2:][::2][:2] == ["1", "2"]

    k("apply", "-f", str(lab / "deployment-scale.yaml"))
    k("rollout", "status", "deployment/nginx-deployment", "--timeout=90s", timeout=100)
    assert len(names(cluster, "app=nginx")) == 4
    k("delete", "deployment", "nginx-deployment")
    wait_for("the pods to go", lambda: not names(cluster, "app=nginx"))
    assert "nginx-deployment" not in k("get", "replicasets").stdout


def test_connecting_applications_with_services(cluster: DockerCluster) -> None:
    k, lab = cluster.kubectl, TUTORIALS / "services"
    k("apply", "-f", str(lab / "run-my-nginx.yaml"))
    k("rollout", "status", "deployment/my-nginx", "--timeout=90s", timeout=100)
    ips = k("get", "pods", "-l", "run=my-nginx", "-o", "custom-columns=POD_IP:.status.podIPs").stdout.splitlines()
    assert ips[0] == "POD_IP" and len(ips) == 3
    for line in ips[1:]:
        assert "Welcome to nginx" in get(f"http://{line.split('ip:')[1].rstrip(']')}/")
    old = names(cluster, "run=my-nginx")

    k("expose", "deployment/my-nginx")
    cluster_ip = k("get", "svc", "my-nginx", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert k("get", "svc", "my-nginx").stdout.splitlines()[1].split()[:5] == [
        "my-nginx", "ClusterIP", cluster_ip, "<none>", "80/TCP"]
    pod_ips = sorted(k("get", "pods", "-l", "run=my-nginx", "-o", "jsonpath={.items[*].status.podIP}").stdout.split())
    wait_for("both endpoints", lambda: _endpoints(cluster) == sorted(f"{ip}:80" for ip in pod_ips))
    slices = k("get", "endpointslices", "-l", "kubernetes.io/service-name=my-nginx").stdout.splitlines()
    assert len(slices) == 2 and slices[1].split()[1:3] == ["IPv4", "80"]
    assert sorted(slices[1].split()[3].split(",")) == pod_ips

    env = k("exec", old[0], "--", "printenv").stdout
    assert "KUBERNETES_SERVICE_HOST=" in env and "MY_NGINX_SERVICE_HOST" not in env
    k("scale", "deployment", "my-nginx", "--replicas=0")
    k("scale", "deployment", "my-nginx", "--replicas=2")
    k("rollout", "status", "deployment/my-nginx", "--timeout=90s", timeout=100)
    wait_for("the new pods", lambda: len(new := names(cluster, "run=my-nginx")) == 2 and not set(new) & set(old))
    env = k("exec", names(cluster, "run=my-nginx")[0], "--", "printenv").stdout
    assert f"MY_NGINX_SERVICE_HOST={cluster_ip}\n" in env and "MY_NGINX_SERVICE_PORT=80\n" in env

    dns_ip = k("get", "services", "kube-dns", "--namespace=kube-system", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert dns_ip
    out = k("run", "curl", "--image=kubelab/busybox:1.35", "-i", "--rm", "--restart=Never", "--",
            "sh", "-c", "cat /etc/resolv.conf; nslookup my-nginx; wget -qO- http://my-nginx", timeout=120).stdout
    assert f"nameserver {dns_ip}" in out
    assert "my-nginx.default.svc.cluster.local" in out and f"Address: {cluster_ip}" in out
    assert "Welcome to nginx" in out

    k("delete", "deployment", "my-nginx")
    k("delete", "service", "my-nginx")
    wait_for("the pods to go", lambda: not names(cluster, "run=my-nginx"))


def test_cronjob_runs_now_with_create_job_from(cluster: DockerCluster) -> None:
    k = cluster.kubectl
    k("create", "-f", str(TUTORIALS / "cronjob" / "cronjob.yaml"))
    k("create", "job", "hello-now", "--from=cronjob/hello")
    job = cluster.json("get", "job", "hello-now")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert [(o["kind"], o["name"]) for o in job["metadata"]["ownerReferences"]] == [("CronJob", "hello")]
    k("wait", "--for=condition=complete", "job/hello-now", "--timeout=90s", timeout=100)
    assert "Hello from the Kubernetes cluster" in k("logs", "job/hello-now").stdout
    bad = k("create", "cronjob", "bad", "--image=kubelab/busybox:1.35", "--schedule=61 * * * *", check=False)
    assert bad.returncode != 0
    assert 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61' in bad.stderr
    k("delete", "cronjob", "hello")
    wait_for("the CronJob's job to go with it", lambda: k("get", "job", "hello-now", check=False).returncode != 0)


def _endpoints(cluster: DockerCluster) -> list[str]:
    for line in cluster.kubectl("describe", "svc", "my-nginx").stdout.splitlines():
        if line.startswith("Endpoints:"):
            return sorted(line.split(":", 1)[1].strip().split(","))
    return []


def readme_yaml(tutorial: str) -> str:
    """The first YAML block of a tutorial's README (a manifest the reader saves, as on kubernetes.io)."""
    text = (TUTORIALS / tutorial / "README.md").read_text()
    return text.split("```yaml\n", 1)[1].split("```", 1)[0]


def spider(cluster: DockerCluster, *labels: str) -> str:
    """A busybox pod whose shell runs ``wget --spider --timeout=5 nginx`` (the README's step, typed into
    ``sh -c`` rather than an interactive shell): its log once it has finished."""
    k = cluster.kubectl
    k("run", "busybox", "--restart=Never", "--image=kubelab/busybox:1.35", *labels,
      "--", "sh", "-c", "wget --spider --timeout=5 nginx")
    try:
        wait_for("wget to finish", lambda: k("get", "pod", "busybox", "-o", "jsonpath={.status.phase}").stdout
                 in ("Succeeded", "Failed"))
        return k("logs", "busybox").stdout
    finally:
        k("delete", "pod", "busybox", "--wait=true", timeout=100)


def test_declare_network_policy(cluster: DockerCluster) -> None:
    k = cluster.kubectl
    k("create", "deployment", "nginx", "--image=kubelab/nginx:1.22")
    k("expose", "deployment", "nginx", "--port=80")
    k("rollout", "status", "deployment/nginx", "--timeout=90s", timeout=100)
    assert "service/nginx" in k("get", "svc,pod").stdout
    wait_for("nginx through its Service", lambda: "remote file exists" in spider(cluster))

    k("apply", "-f", "-", input=readme_yaml("network-policy"))
    assert "Allowing ingress traffic:" in k("describe", "networkpolicy", "access-nginx").stdout
    wait_for("the policy to deny", lambda: "remote file exists" not in spider(cluster))
    denied = spider(cluster)
    assert "Connection refused" in denied or "download timed out" in denied, denied
    assert "remote file exists" in spider(cluster, "--labels=access=true")

    k("delete", "networkpolicy", "access-nginx")
    k("delete", "service", "nginx")
    k("delete", "deployment", "nginx")
    wait_for("the pods to go", lambda: not names(cluster, "app=nginx"))
