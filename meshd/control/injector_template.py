"""What the sidecar injector adds to a pod: ``istio-init``, the ``istio-proxy`` native sidecar, volumes, probes.

Pure functions over plain dicts, used by :mod:`meshd.control.injector` (which decides *whether*
to inject and builds the patch). The shapes follow Istio's injection template in its
native-sidecar form, so ``kubectl get pod -o yaml`` reads as on Istio:

* ``istio-init`` -- runs ``python3 -m meshd.proxy.iptables`` with Istio's flags (``-p 15001 -z 15006
  -u 1337 -m REDIRECT -i '*' -x '' -b '*' -d 15090,15021,15020``) adjusted by the pod's
  ``traffic.sidecar.istio.io/*`` annotations; root with ``NET_ADMIN`` and ``NET_RAW`` only;
* ``istio-proxy`` -- an init container with ``restartPolicy: Always`` (the kubelet starts the
  app containers once its startupProbe on 15021 ``/healthz/ready`` passed, and stops it after
  them), uid/gid 1337, resource requests (``sidecar.istio.io/proxyCPU`` ... override them), the
  environment :mod:`meshd.proxy.settings` reads (downward API for the pod's name, namespace, IP
  and service account);
* volumes: ``istio-token`` (projected service-account token, audience ``istio-ca``, 12 h) at
  ``/var/run/secrets/tokens``, ``istiod-ca-cert`` (ConfigMap ``istio-ca-root-cert``) at
  ``/var/run/secrets/istio``, ``istio-data`` (emptyDir) and ``istio-podinfo`` (downward API
  labels and annotations at ``/etc/istio/pod``);
* app probes: ``httpGet``/``tcpSocket`` liveness, readiness and startup probes are pointed at the
  sidecar's ``15020 /app-health/<container>/livez|readyz|startupz`` and the originals passed in
  ``ISTIO_KUBE_APP_PROBERS`` (Istio's JSON), so kubelet probes work under STRICT mTLS.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from machinery.meshcapture import capture_args
from meshd.api.identity import (
    CA_AUDIENCE,
    DISCOVERY_PORT,
    PROXY_GID,
    PROXY_UID,
    READY_PORT,
    ROOT_CERT_CONFIGMAP,
    STATUS_PORT,
)

__all__ = [
    "INIT_NAME",
    "PROXY_NAME",
    "VOLUME_NAMES",
    "discovery_address",
    "init_container",
    "iptables_args",
    "proxy_container",
    "rewrite_probes",
    "volumes",
]

INIT_NAME = "istio-init"
PROXY_NAME = "istio-proxy"
TOKEN_VOLUME = "istio-token"
ROOT_CERT_VOLUME = "istiod-ca-cert"
DATA_VOLUME = "istio-data"
PODINFO_VOLUME = "istio-podinfo"
VOLUME_NAMES = (DATA_VOLUME, PODINFO_VOLUME, TOKEN_VOLUME, ROOT_CERT_VOLUME)
TOKEN_SECONDS = 43_200
_PROBES = {"livenessProbe": "livez", "readinessProbe": "readyz", "startupProbe": "startupz"}

def iptables_args(annotations: Mapping[str, str]) -> list[str]:
    """istio-init's flags: Istio's defaults with the pod's ``traffic.sidecar.istio.io/*`` annotations."""
    return capture_args(annotations)


def init_container(annotations: Mapping[str, str], image: str) -> dict[str, Any]:
    return {
        "name": INIT_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-m", "meshd.proxy.iptables"],
        "args": iptables_args(annotations),
        "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False, "privileged": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": False, "runAsGroup": 0, "runAsNonRoot": False, "runAsUser": 0,
        },
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _resources(annotations: Mapping[str, str]) -> dict[str, Any]:
    requests = {"cpu": annotations.get("sidecar.istio.io/proxyCPU", "100m"),
                "memory": annotations.get("sidecar.istio.io/proxyMemory", "128Mi")}
    limits = {"cpu": annotations.get("sidecar.istio.io/proxyCPULimit", "2"),
              "memory": annotations.get("sidecar.istio.io/proxyMemoryLimit", "1Gi")}
    return {"requests": requests, "limits": limits}


def proxy_container(pod: Mapping[str, Any], *, image: str, discovery_address: str, workload: str,
                    probers: Mapping[str, Any], prometheus: Mapping[str, str]) -> dict[str, Any]:
    """The ``istio-proxy`` native sidecar for ``pod`` (its metadata as admitted)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    ready = {"httpGet": {"path": "/healthz/ready", "port": READY_PORT, "scheme": "HTTP"}}
    env: list[dict[str, Any]] = [
        {"name": "CA_ADDR", "value": discovery_address},
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("HOST_IP", "status.hostIP"),
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
        {"name": "ISTIO_METAJSON_LABELS", "value": json.dumps(meta.get("labels") or {}, sort_keys=True)},
        {"name": "ISTIO_META_APP_CONTAINERS",
         "value": ",".join(str(c["name"]) for c in (pod.get("spec") or {}).get("containers") or [])},
    ]
    if probers:
        env.append({"name": "ISTIO_KUBE_APP_PROBERS", "value": json.dumps(probers, sort_keys=True)})
    if prometheus:
        env.append({"name": "ISTIO_PROMETHEUS_ANNOTATIONS", "value": json.dumps(dict(prometheus), sort_keys=True)})
    if annotations.get("sidecar.istio.io/logLevel"):
        env.append({"name": "PROXY_LOG_LEVEL", "value": str(annotations["sidecar.istio.io/logLevel"])})
    return {
        "name": PROXY_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "env": env,
        "resources": _resources(annotations),
        "startupProbe": {**ready, "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3,
                         "failureThreshold": 600},
        "readinessProbe": {**ready, "initialDelaySeconds": 0, "periodSeconds": 15, "timeoutSeconds": 3,
                           "failureThreshold": 4},
        "securityContext": {
            "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": False, "runAsGroup": PROXY_GID, "runAsNonRoot": True, "runAsUser": PROXY_UID,
        },
        "volumeMounts": [
            {"name": ROOT_CERT_VOLUME, "mountPath": "/var/run/secrets/istio"},
            {"name": DATA_VOLUME, "mountPath": "/var/lib/istio/data"},
            {"name": TOKEN_VOLUME, "mountPath": "/var/run/secrets/tokens"},
            {"name": PODINFO_VOLUME, "mountPath": "/etc/istio/pod"},
        ],
    }


def volumes() -> list[dict[str, Any]]:
    return [
        {"name": DATA_VOLUME, "emptyDir": {}},
        {"name": PODINFO_VOLUME, "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": CA_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": TOKEN_VOLUME}}]}},
        {"name": ROOT_CERT_VOLUME, "configMap": {"name": ROOT_CERT_CONFIGMAP}},
    ]


def _named_port(container: Mapping[str, Any], port: Any) -> Any:
    """A named probe port resolved to the container's number (the sidecar dials numbers)."""
    if isinstance(port, str) and not port.isdigit():
        for declared in container.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
        return port
    return int(port) if isinstance(port, str) else port


def rewrite_probes(containers: list[dict[str, Any]]) -> dict[str, Any]:
    """Point the app containers' HTTP and TCP probes at the sidecar (in place); the originals,
    keyed by their new path, as ``ISTIO_KUBE_APP_PROBERS`` carries them. Exec and gRPC probes stay."""
    probers: dict[str, Any] = {}
    for container in containers:
        for field, suffix in _PROBES.items():
            probe = container.get(field)
            if not isinstance(probe, dict):
                continue
            path = f"/app-health/{container['name']}/{suffix}"
            original: dict[str, Any]
            if isinstance(probe.get("httpGet"), dict):
                original = {"httpGet": copy.deepcopy(probe["httpGet"])}
                original["httpGet"]["port"] = _named_port(container, original["httpGet"].get("port"))
                original["httpGet"].setdefault("scheme", "HTTP")
            elif isinstance(probe.get("tcpSocket"), dict):
                original = {"tcpSocket": {"port": _named_port(container, probe["tcpSocket"].get("port"))}}
            else:
                continue
            original["timeoutSeconds"] = int(probe.get("timeoutSeconds") or 1)
            probers[path] = original
            probe.pop("tcpSocket", None)
            probe["httpGet"] = {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}
    return probers


def discovery_address(namespace: str) -> str:
    """``istiod.<namespace>.svc:15012``, where sidecars find meshd."""
    return f"istiod.{namespace}.svc:{DISCOVERY_PORT}"
