"""``kubelab mesh inject -f FILE``: manifests printed with the sidecar injected (istioctl kube-inject)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubelab.cli import main
from kubelab.images import PROXYV2

MANIFESTS = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-demo
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels: {app: nginx-demo}
  template:
    metadata:
      labels: {app: nginx-demo, version: v1}
    spec:
      containers:
      - name: nginx
        image: kubelab/nginx:1.22
        ports: [{containerPort: 80, name: http}]
        readinessProbe:
          httpGet: {path: /, port: http}
---
apiVersion: v1
kind: Service
metadata:
  name: nginx-demo
  namespace: demo
spec:
  selector: {app: nginx-demo}
  ports: [{name: http, port: 80}]
"""


def test_inject_prints_the_injected_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "app.yaml"
    source.write_text(MANIFESTS)
    assert main(["mesh", "inject", "-f", str(source)]) == 0
    deployment, service = list(yaml.safe_load_all(capsys.readouterr().out))
    template = deployment["spec"]["template"]
    init = template["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["istio-init", "istio-proxy"]
    assert init[0]["image"] == init[1]["image"] == PROXYV2
    assert init[1]["restartPolicy"] == "Always"
    assert template["spec"]["containers"][0]["readinessProbe"]["httpGet"] == {
        "path": "/app-health/nginx/readyz", "port": 15020, "scheme": "HTTP"}
    env = {e["name"]: e.get("value") for e in init[1]["env"]}
    assert env["ISTIO_META_WORKLOAD_NAME"] == "nginx-demo"
    assert json.loads(env["ISTIO_KUBE_APP_PROBERS"])["/app-health/nginx/readyz"]["httpGet"]["port"] == 80
    assert deployment["spec"]["replicas"] == 2
    assert service == list(yaml.safe_load_all(MANIFESTS))[1]


def test_inject_reads_stdin_as_json_and_reports_bad_files(tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "demo"},
           "spec": {"containers": [{"name": "app", "image": "a:1"}]}}
    result = subprocess.run([sys.executable, "-m", "kubelab", "mesh", "inject", "-f", "-", "-o", "json",
                             "--proxy-image", "proxy:9"], input=json.dumps(pod), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [c["image"] for c in out["spec"]["initContainers"]] == ["proxy:9", "proxy:9"]
    missing = subprocess.run([sys.executable, "-m", "kubelab", "mesh", "inject", "-f", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr


def test_meshd_default_proxy_image_is_the_one_kubelab_builds() -> None:
    from kubelab.images import PROXYV2
    from meshd.control.settings import MeshdSettings

    assert MeshdSettings().proxy_image == PROXYV2
