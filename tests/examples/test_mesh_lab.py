"""The mesh lab stays valid: ``examples/mesh-lab`` (README steps and ``bookinfo.yaml``).

``bookinfo.yaml`` is also checked by :mod:`tests.examples.test_examples` like every example
manifest (dry run, images, readiness). Here, what only the mesh needs:

* the Istio resources the README applies inline (``kubectl apply -f - <<'EOF'`` blocks) parse, are
  Istio kinds, and meshd's validating webhook accepts them without errors or warnings about
  unimplemented fields;
* they refer to what exists: VirtualService hosts are the lab's Services, subsets are defined by
  the DestinationRule and select pods ``bookinfo.yaml`` runs;
* the injector gives every lab pod ``istio-init`` and the native ``istio-proxy`` sidecar, and moves
  the readiness probes to the sidecar;
* (``kubectl``) a real apiserver with meshd's CRDs takes every README block and the workloads with
  ``kubectl apply --dry-run=server``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelab.testing import kubectl, start_apiserver
from meshd.control.crds import load_crds
from meshd.control.injector import inject_manifest
from meshd.control.istio_validation import validate
from meshd.control.settings import MeshdSettings

LAB = Path(__file__).resolve().parents[2] / "examples" / "mesh-lab"
README = LAB / "README.md"
WORKLOADS = LAB / "bookinfo.yaml"
NAMESPACE = "mesh-lab"


def _blocks() -> list[str]:
    return re.findall(r"kubectl apply -f - <<'EOF'\n(.*?)\nEOF\n", README.read_text(), re.S)


def _istio_docs() -> list[dict[str, Any]]:
    return [d for block in _blocks() for d in yaml.safe_load_all(block) if d]


def _workloads() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(WORKLOADS.read_text()) if d]


def test_the_lab_applies_the_seed_resources() -> None:
    kinds = [(d["kind"], d["metadata"]["name"]) for d in _istio_docs()]
    assert ("DestinationRule", "reviews") in kinds
    assert ("VirtualService", "reviews") in kinds and ("VirtualService", "ratings") in kinds
    assert ("PeerAuthentication", "default") in kinds
    for doc in _istio_docs():
        assert doc["apiVersion"].split("/")[0] in ("networking.istio.io", "security.istio.io"), doc["apiVersion"]
        assert doc["metadata"]["namespace"] == NAMESPACE
    assert "kubectl label namespace mesh-lab istio-injection=enabled" in README.read_text()
    assert "kubelab mesh proxy-status" in README.read_text()


@pytest.mark.parametrize("index", range(len(_istio_docs())))
def test_meshd_accepts_each_resource_without_warnings(index: int) -> None:
    doc = _istio_docs()[index]
    errors, warnings = validate(doc["kind"], doc)
    assert (errors, warnings) == ([], []), f"{doc['kind']}/{doc['metadata']['name']}"


def test_routes_refer_to_services_and_subsets_that_exist() -> None:
    services = {d["metadata"]["name"]: d for d in _workloads() if d["kind"] == "Service"}
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in _workloads() if d["kind"] == "Deployment"]
    subsets = {(d["spec"]["host"], s["name"]): s["labels"] for d in _istio_docs() if d["kind"] == "DestinationRule"
               for s in d["spec"]["subsets"]}
    routes = 0
    for vs in (d for d in _istio_docs() if d["kind"] == "VirtualService"):
        assert set(vs["spec"]["hosts"]) <= set(services), vs["spec"]["hosts"]
        for http in vs["spec"]["http"]:
            for route in http["route"]:
                destination = route["destination"]
                service = services[destination["host"]]
                routes += 1
                if "subset" not in destination:
                    continue
                labels = {**service["spec"]["selector"], **subsets[(destination["host"], destination["subset"])]}
                assert any(labels.items() <= pod.items() for pod in pod_labels), f"no pod for {destination}"
    assert routes >= 5
    canary = next(d for d in _istio_docs() if d["kind"] == "VirtualService" and d["metadata"]["name"] == "reviews")
    assert [r["weight"] for r in canary["spec"]["http"][0]["route"]] == [90, 10]


def test_the_injector_adds_the_sidecar_to_every_lab_pod() -> None:
    settings = MeshdSettings()
    for doc in (d for d in _workloads() if d["kind"] in ("Deployment", "Pod")):
        injected = inject_manifest(doc, settings)["spec"]
        spec = injected["template"]["spec"] if doc["kind"] == "Deployment" else injected
        inits = {c["name"]: c for c in spec["initContainers"]}
        assert list(inits) == ["istio-init", "istio-proxy"], doc["metadata"]["name"]
        assert inits["istio-proxy"]["restartPolicy"] == "Always"
        for container in spec["containers"]:
            probe = container.get("readinessProbe")
            if probe is not None:
                assert probe["httpGet"]["port"] == 15020 and probe["httpGet"]["path"].startswith("/app-health/")


@pytest.mark.kubectl
def test_kubectl_dry_run_applies_the_lab(tmp_path: Path) -> None:
    with start_apiserver(tmp_path / "api", store="sqlite") as server:
        crds = {"apiVersion": "v1", "kind": "List", "items": load_crds()}
        kubectl("apply", "-f", "-", kubeconfig=server.kubeconfig, input=yaml.safe_dump(crds))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", kubeconfig=server.kubeconfig,
                timeout=90)
        kubectl("create", "namespace", NAMESPACE, kubeconfig=server.kubeconfig)
        kubectl("label", "namespace", NAMESPACE, "istio-injection=enabled", kubeconfig=server.kubeconfig)
        done = kubectl("apply", "--dry-run=server", "-n", NAMESPACE, "-f", str(WORKLOADS), kubeconfig=server.kubeconfig,
                       check=False)
        assert done.returncode == 0, done.stderr
        for block in _blocks():
            done = kubectl("apply", "--dry-run=server", "-f", "-", kubeconfig=server.kubeconfig, input=block,
                           check=False)
            assert done.returncode == 0, f"{done.stderr}\n{block}"
            assert "created (server dry run)" in done.stdout, done.stdout
        stored = kubectl("get", "virtualservices,destinationrules,peerauthentications", "-n", NAMESPACE,
                         kubeconfig=server.kubeconfig)
        assert "No resources found" in stored.stdout + stored.stderr
