"""The real kubectl against kubelab, on SQLite and on a real etcd.

Covers what a Kubernetes user types first: discovery, create/apply (client- and server-side),
get in every output format, watch, describe, label/annotate/patch, replace, diff, imperative
create (kubectl 1.29 sends JSON, 1.33 sends protobuf), scale, delete, and the error messages.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubelab.testing import start_apiserver
from tests.e2e.kubectl_harness import KubectlCluster
from tests.etcd_server import EtcdServer

pytestmark = pytest.mark.kubectl

VERSIONS = [pytest.param(None, id="kubectl"), pytest.param("1.29", id="1.29"), pytest.param("1.33", id="1.33")]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.22
        ports:
        - containerPort: 80
        env:
        - name: A
          value: "1"
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"""


@pytest.fixture(scope="module", params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubectlCluster]:
    store = request.param
    state = tmp_path_factory.mktemp(f"kubectl-{store}")
    kwargs: dict[str, object] = {}
    if store == "etcd":
        etcd: EtcdServer = request.getfixturevalue("etcd_server")
        kwargs = {"etcd_servers": [etcd.client_url], "etcd_prefix": f"/kubectl-{time.time_ns()}"}
    server = start_apiserver(state, store=store, **kwargs)  # type: ignore[arg-type]
    try:
        yield KubectlCluster(server=server, store=store, workdir=state)
    finally:
        server.stop()


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", VERSIONS)
def test_api_resources_and_version(kube: KubectlCluster, version: str | None) -> None:
    out = kube.run("api-resources", version=version).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"pods", "deployments", "services", "namespaces", "leases", "events", "nodes"} <= set(lines)
    assert "deploy" in lines["deployments"] and "apps/v1" in lines["deployments"]
    assert "Server Version: v1.32.0-kubelab" in kube.run("version", version=version).stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_apply_create_then_change_then_server_side(kube: KubectlCluster, version: str | None) -> None:
    ns = kube.namespace("apply")
    manifest = kube.write(f"web-{ns}.yaml", DEPLOYMENT)
    out = kube.run("apply", "-n", ns, "-f", str(manifest), version=version).stdout
    assert out.splitlines() == ["deployment.apps/web created", "service/web created"]
    changed = kube.write(f"web2-{ns}.yaml", DEPLOYMENT.replace('value: "1"', 'value: "2"').replace(
        "replicas: 2", "replicas: 3"))
    out = kube.run("apply", "-n", ns, "-f", str(changed), version=version).stdout
    assert out.splitlines() == ["deployment.apps/web configured", "service/web unchanged"]
    d = _json(kube.run("get", "-n", ns, "deploy", "web", "-o", "json"))
    spec = d["spec"]  # type: ignore[index]
    assert spec["replicas"] == 3  # type: ignore[index]
    assert spec["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "2"}]  # type: ignore[index]
    annotations = d["metadata"]["annotations"]  # type: ignore[index]
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations
    out = kube.run("apply", "--server-side", "-n", ns, "-f", str(changed), version=version).stdout
    assert out.splitlines() == ["deployment.apps/web serverside-applied", "service/web serverside-applied"]


def test_server_side_apply_creates(kube: KubectlCluster) -> None:
    ns = kube.namespace("ssa")
    manifest = kube.write(f"cm-{ns}.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n")
    assert kube.run("apply", "--server-side", "-n", ns, "-f", str(manifest)).stdout.strip() == \
        "configmap/c serverside-applied"
    assert _json(kube.run("get", "-n", ns, "cm", "c", "-o", "json"))["data"] == {"k": "v"}


def test_create_f_and_already_exists(kube: KubectlCluster) -> None:
    ns = kube.namespace("create")
    manifest = kube.write(f"cm-{ns}.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n")
    assert kube.run("create", "-n", ns, "-f", str(manifest)).stdout.strip() == "configmap/cfg created"
    again = kube.run("create", "-n", ns, "-f", str(manifest), check=False)
    assert again.returncode == 1
    assert f'Error from server (AlreadyExists): error when creating "{manifest}": configmaps "cfg" already exists' \
        in again.stderr


def test_get_output_formats(kube: KubectlCluster) -> None:
    ns = kube.namespace("get")
    kube.run("apply", "-n", ns, "-f", str(kube.write(f"g-{ns}.yaml", DEPLOYMENT)))
    kube.run("label", "-n", ns, "svc", "web", "tier=front")
    wide = kube.run("get", "-n", ns, "deploy", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[0] == "web" and wide[1].split()[-3:] == ["nginx", "nginx:1.22", "app=web"]
    y = kube.run("get", "-n", ns, "deploy", "web", "-o", "yaml").stdout
    assert "kind: Deployment" in y and "name: web" in y
    assert kube.run("get", "-n", ns, "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "2"
    assert kube.run("get", "-n", ns, "deploy,svc", "-o", "name").stdout.splitlines() == [
        "deployment.apps/web", "service/web"]
    labelled = kube.run("get", "-n", ns, "svc", "-l", "tier=front", "-o", "name").stdout.split()
    assert labelled == ["service/web"]
    assert kube.run("get", "-n", ns, "svc", "-l", "tier=back", "-o", "name").stdout == ""
    shown = kube.run("get", "-n", ns, "svc", "--show-labels").stdout.splitlines()
    assert shown[0].split()[-1] == "LABELS" and shown[1].split()[-1] == "tier=front"
    everywhere = kube.run("get", "svc", "-A").stdout.splitlines()
    assert everywhere[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == [ns, "web"] for line in everywhere)
    assert any(line.split()[:2] == ["default", "kubernetes"] for line in everywhere)


def test_get_sort_by(kube: KubectlCluster) -> None:
    ns = kube.namespace("sort")
    for name, replicas in (("b", 3), ("a", 1), ("c", 2)):
        kube.run("create", "deployment", name, "--image=nginx:1.22", f"--replicas={replicas}", "-n", ns)
    rows = kube.run("get", "deploy", "-n", ns, "--sort-by=.spec.replicas", "--no-headers").stdout.splitlines()
    assert [r.split()[0] for r in rows] == ["a", "c", "b"]


def test_get_watch_shows_events(kube: KubectlCluster) -> None:
    ns = kube.namespace("watch")
    cmd = [str(Path("/usr/bin/kubectl")), "get", "cm", "-n", ns, "-w", "--output-watch-events",
           f"--cache-dir={kube.workdir / 'watch-cache'}"]
    # kubectl lists, prints, then watches from the list's resourceVersion: once the marker's row is
    # printed, every later write reaches the watch.
    kube.run("create", "cm", "marker", "-n", ns)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"KUBECONFIG": str(kube.server.kubeconfig), "PATH": "/usr/bin:/bin",
                                 "HOME": str(kube.workdir)})
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, name="kubectl-watch-reader", daemon=True)
    reader.start()

    def w_events() -> list[str]:
        return [r[0] for r in (line.split() for line in list(lines)) if len(r) > 1 and r[1] == "w"]

    try:
        wait_until(lambda: any(len(r) > 1 and r[1] == "marker" for r in (line.split() for line in list(lines))),
                   what="the initial listing")
        kube.run("create", "cm", "w", "-n", ns)
        kube.run("label", "cm", "w", "x=y", "-n", ns)
        kube.run("delete", "cm", "w", "-n", ns)
        wait_until(lambda: len(w_events()) >= 3, what="three watch events of cm/w")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
    rows = [line.split() for line in lines if line.strip()]
    assert rows[0][:2] == ["EVENT", "NAME"]
    assert w_events() == ["ADDED", "MODIFIED", "DELETED"]


def wait_until(predicate: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_describe_deployment(kube: KubectlCluster) -> None:
    ns = kube.namespace("describe")
    kube.run("create", "deployment", "web", "--image=nginx:1.22", "--replicas=2", "-n", ns)
    out = kube.run("describe", "deploy", "web", "-n", ns).stdout
    assert "Name:                   web" in out
    assert "Replicas:               2 desired" in out
    assert "Image:         nginx:1.22" in out or "Image:        nginx:1.22" in out


def test_label_annotate_and_patch_types(kube: KubectlCluster) -> None:
    ns = kube.namespace("patch")
    kube.run("create", "deployment", "web", "--image=nginx:1.22", "-n", ns)
    assert kube.run("label", "deploy", "web", "env=prod", "-n", ns).stdout.strip() == "deployment.apps/web labeled"
    overwrite = kube.run("label", "deploy", "web", "env=dev", "-n", ns, check=False)
    assert overwrite.returncode == 1 and "--overwrite is false" in overwrite.stderr
    kube.run("annotate", "deploy", "web", "note=hello", "-n", ns)
    kube.run("patch", "deploy", "web", "-n", ns, "-p", '{"spec":{"replicas":4}}')
    kube.run("patch", "deploy", "web", "-n", ns, "--type", "merge", "-p", '{"spec":{"paused":true}}')
    kube.run("patch", "deploy", "web", "-n", ns, "--type", "json",
             "-p", '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.23"}]')
    kube.run("label", "deploy", "web", "env-", "-n", ns)
    d = _json(kube.run("get", "deploy", "web", "-n", ns, "-o", "json"))
    assert d["metadata"]["annotations"]["note"] == "hello"  # type: ignore[index]
    assert "env" not in d["metadata"]["labels"]  # type: ignore[index]
    assert d["spec"]["replicas"] == 4 and d["spec"]["paused"] is True  # type: ignore[index]
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.23"  # type: ignore[index]
    assert d["metadata"]["generation"] == 4  # type: ignore[index]


def test_replace_conflicts_on_stale_version(kube: KubectlCluster) -> None:
    ns = kube.namespace("replace")
    kube.run("create", "cm", "c", "--from-literal=a=1", "-n", ns)
    live = kube.run("get", "cm", "c", "-n", ns, "-o", "yaml").stdout
    stale = kube.write(f"stale-{ns}.yaml", live.replace("a: \"1\"", "a: \"2\""))
    kube.run("label", "cm", "c", "bump=1", "-n", ns)
    result = kube.run("replace", "-f", str(stale), check=False)
    assert result.returncode == 1
    assert "Error from server (Conflict)" in result.stderr and "the object has been modified" in result.stderr
    fresh = kube.write(f"fresh-{ns}.yaml", kube.run("get", "cm", "c", "-n", ns, "-o", "yaml").stdout.replace(
        'a: "1"', 'a: "3"'))
    assert kube.run("replace", "-f", str(fresh)).stdout.strip() == "configmap/c replaced"


def test_diff(kube: KubectlCluster) -> None:
    ns = kube.namespace("diff")
    manifest = kube.write(f"d-{ns}.yaml", DEPLOYMENT)
    kube.run("apply", "-n", ns, "-f", str(manifest))
    same = kube.run("diff", "-n", ns, "-f", str(manifest), check=False)
    assert same.returncode == 0 and same.stdout == ""
    changed = kube.write(f"d2-{ns}.yaml", DEPLOYMENT.replace("nginx:1.22", "nginx:1.23"))
    different = kube.run("diff", "-n", ns, "-f", str(changed), check=False)
    assert different.returncode == 1
    assert "-        image: nginx:1.22" in different.stdout and "+        image: nginx:1.23" in different.stdout
    image = kube.run("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "nginx:1.22"


@pytest.mark.parametrize("version", [pytest.param("1.29", id="json-1.29"), pytest.param("1.33", id="protobuf-1.33")])
def test_imperative_create(kube: KubectlCluster, version: str) -> None:
    tag = version.replace(".", "")
    assert kube.run("create", "namespace", f"imp-{tag}", version=version).stdout.strip() == \
        f"namespace/imp-{tag} created"
    ns = f"imp-{tag}"
    out = [
        kube.run("create", "configmap", "cm", "--from-literal=k=v", "-n", ns, version=version).stdout.strip(),
        kube.run("create", "secret", "generic", "s", "--from-literal=p=q", "-n", ns, version=version).stdout.strip(),
        kube.run("create", "deployment", "d", "--image=nginx:1.22", "--replicas=2", "--port=80", "-n", ns,
                 version=version).stdout.strip(),
        kube.run("create", "serviceaccount", "sa", "-n", ns, version=version).stdout.strip(),
        kube.run("create", "service", "clusterip", "svc", "--tcp=80:8080", "-n", ns, version=version).stdout.strip(),
    ]
    assert out == ["configmap/cm created", "secret/s created", "deployment.apps/d created",
                   "serviceaccount/sa created", "service/svc created"]
    d = _json(kube.run("get", "deploy", "d", "-n", ns, "-o", "json"))
    assert d["spec"]["replicas"] == 2  # type: ignore[index]
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"] == [  # type: ignore[index]
        {"containerPort": 80, "protocol": "TCP"}]
    s = _json(kube.run("get", "secret", "s", "-n", ns, "-o", "json"))
    assert s["data"] == {"p": "cQ=="}
    svc = _json(kube.run("get", "svc", "svc", "-n", ns, "-o", "json"))
    assert svc["spec"]["ports"][0]["targetPort"] == 8080  # type: ignore[index]
    assert svc["spec"]["clusterIP"].startswith("10.")  # type: ignore[index]


def test_scale(kube: KubectlCluster) -> None:
    ns = kube.namespace("scale")
    kube.run("create", "deployment", "web", "--image=nginx:1.22", "--replicas=2", "-n", ns)
    assert kube.run("scale", "deploy", "web", "--replicas=5", "-n", ns).stdout.strip() == "deployment.apps/web scaled"
    kube.run("scale", "deploy", "web", "--current-replicas=5", "--replicas=1", "-n", ns)
    assert kube.run("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout == "1"
    wrong = kube.run("scale", "deploy", "web", "--current-replicas=7", "--replicas=2", "-n", ns, check=False)
    assert wrong.returncode == 1 and "Expected replicas to be 7, was 1" in wrong.stderr


def test_delete_returns(kube: KubectlCluster) -> None:
    ns = kube.namespace("delete")
    kube.run("create", "cm", "c", "-n", ns)
    kube.run("create", "deployment", "web", "--image=nginx:1.22", "-n", ns)
    kube.run("run", "p", "--image=busybox:1.35", "-n", ns)
    out = kube.run("delete", "cm/c", "deploy/web", "pod/p", "-n", ns, timeout=30).stdout.splitlines()
    assert out == ['configmap "c" deleted', 'deployment.apps "web" deleted', 'pod "p" deleted']
    missing = kube.run("delete", "cm", "c", "-n", ns, check=False)
    assert missing.returncode == 1 and 'configmaps "c" not found' in missing.stderr
    gone = kube.run("delete", "namespace", ns, "--wait=false").stdout.strip()
    assert gone == f'namespace "{ns}" deleted'
    phase = kube.run("get", "namespace", ns, "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Terminating"


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(("get", "pod", "nosuch"), 'Error from server (NotFound): pods "nosuch" not found', id="not-found"),
    pytest.param(("get", "deploy", "nosuch"), 'Error from server (NotFound): deployments.apps "nosuch" not found',
                 id="not-found-group"),
    pytest.param(("create", "deployment", "Bad_Name", "--image=x"),
                 'Deployment.apps "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"', id="invalid"),
    pytest.param(("get", "widgets"), 'error: the server doesn\'t have a resource type "widgets"', id="no-type"),
])
def test_error_messages(kube: KubectlCluster, args: tuple[str, ...], expected: str) -> None:
    result = kube.run(*args, check=False)
    assert result.returncode == 1
    assert expected in result.stderr


def test_invalid_manifest_names_the_field(kube: KubectlCluster) -> None:
    bad = kube.write("bad.yaml", DEPLOYMENT.split("---")[0].replace("replicas: 2", "replicas: -1"))
    result = kube.run("apply", "-f", str(bad), check=False)
    assert result.returncode == 1
    assert 'The Deployment "web" is invalid: spec.replicas: Invalid value: -1' in result.stderr


def test_strict_field_validation_rejects_unknown_fields(kube: KubectlCluster) -> None:
    bad = kube.write("unknown.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\n  colour: red\n")
    result = kube.run("create", "-f", str(bad), check=False)
    assert result.returncode == 1 and 'unknown field "metadata.colour"' in result.stderr


def test_unauthenticated(kube: KubectlCluster) -> None:
    config = kube.server.kubeconfig.read_text()
    # A token the server does not know stands in for "no credentials" (kubectl would prompt otherwise).
    lines = [line for line in config.splitlines() if "client-key-data" not in line]
    anon = "\n".join(line.split("client-certificate-data")[0] + "token: not-a-valid-token"
                     if "client-certificate-data" in line else line for line in lines)
    path = kube.write("anon-kubeconfig", anon)
    result = subprocess.run(["/usr/bin/kubectl", "get", "pods", f"--cache-dir={kube.workdir / 'anon'}"],
                            capture_output=True, text=True,
                            env={"KUBECONFIG": str(path), "PATH": "/usr/bin:/bin", "HOME": str(kube.workdir)},
                            timeout=60)
    assert result.returncode == 1
    assert "You must be logged in to the server" in result.stderr


@pytest.mark.parametrize("version", ["1.27", "1.28"])
def test_old_kubectl_validates_through_the_server(kube: KubectlCluster, version: str) -> None:
    """kubectl 1.27/1.28 read /openapi/v2 (protobuf) first, then leave validation to the server."""
    ns = kube.namespace(f"old{version.replace('.', '')}")
    manifest = kube.write(f"old-{ns}.yaml", DEPLOYMENT)
    out = kube.run("apply", "-n", ns, "-f", str(manifest), version=version).stdout
    assert out.splitlines() == ["deployment.apps/web created", "service/web created"]
    rows = kube.run("get", "deploy", "-n", ns, version=version).stdout.splitlines()
    assert rows[0].split()[:2] == ["NAME", "READY"] and rows[1].split()[0] == "web"
    changed = kube.write(f"old-{ns}-3.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
    assert "deployment.apps/web configured" in kube.run("apply", "-n", ns, "-f", str(changed), version=version).stdout
    assert kube.run("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}", version=version).stdout == "3"
    bad = kube.write(f"old-{ns}-bad.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  colour: blue"))
    result = kube.run("apply", "-n", ns, "-f", str(bad), version=version, check=False)
    assert result.returncode == 1 and 'unknown field "spec.colour"' in result.stderr
