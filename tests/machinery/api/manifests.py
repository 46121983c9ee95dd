"""Realistic manifests shared by the machinery.api tests (shapes taken from real clusters)."""

from typing import Any

NGINX_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"},
                 "annotations": {"deployment.kubernetes.io/revision": "1", "note": "  keep  verbatim "}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "50%"}},
        "template": {
            "metadata": {"labels": {"app": "nginx", "tier": "web"}},
            "spec": {
                "serviceAccountName": "web",
                "priorityClassName": "high",
                "hostNetwork": False,
                "dnsPolicy": "ClusterFirst",
                "dnsConfig": {"options": [{"name": "ndots", "value": "2"}], "searches": ["svc.cluster.local"]},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "imagePullSecrets": [{"name": "regcred"}],
                "securityContext": {"runAsNonRoot": True, "fsGroup": 101,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In",
                                               "values": ["amd64", "arm64"]}]}]}},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "nginx"}},
                            "topologyKey": "kubernetes.io/hostname"}}]},
                },
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": {"app": "nginx"}}}],
                "initContainers": [{"name": "init", "image": "busybox:1.36",
                                    "command": ["sh", "-c", "echo hi > /work/index.html"],
                                    "volumeMounts": [{"name": "html", "mountPath": "/work"}]}],
                "containers": [{
                    "name": "nginx",
                    "image": "nginx:1.25.3",
                    "ports": [{"name": "http", "containerPort": 80}],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                                            "divisor": "1m"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "S_", "secretRef": {"name": "s"}}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": 1, "memory": "128Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                      "initialDelaySeconds": 5},
                    "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
                    "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
                    "lifecycle": {"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}},
                                  "postStart": {"httpGet": {"port": 80}}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
                    "volumeMounts": [
                        {"name": "html", "mountPath": "/usr/share/nginx/html", "readOnly": True},
                        {"name": "config", "mountPath": "/etc/nginx/conf.d"},
                        {"name": "tls", "mountPath": "/etc/tls"},
                        {"name": "cache", "mountPath": "/var/cache/nginx"},
                        {"name": "logs", "mountPath": "/var/log/nginx"},
                        {"name": "podinfo", "mountPath": "/etc/podinfo"},
                        {"name": "all", "mountPath": "/etc/all"},
                    ],
                }],
                "volumes": [
                    {"name": "html", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": "nginx-conf",
                                                     "items": [{"key": "default.conf", "path": "default.conf"}]}},
                    {"name": "tls", "secret": {"secretName": "nginx-tls", "defaultMode": 256}},
                    {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "logs", "hostPath": {"path": "/var/log/nginx", "type": "DirectoryOrCreate"}},
                    {"name": "podinfo", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "all", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "audience": "api"}},
                        {"configMap": {"name": "cfg"}}, {"secret": {"name": "s"}}]}},
                ],
            },
        },
    },
}

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "containers": [{
            "name": "web", "image": "nginx",
            "ports": [{"containerPort": 80, "name": "http"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"port": 80}},
            "env": [{"name": "A", "value": "1"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }],
        "volumes": [{"name": "data", "emptyDir": {}}],
    },
}

POD_STATUS: dict[str, Any] = {
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                    "lastTransitionTime": "2024-05-01T10:00:00Z"}],
    "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
    "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
    "startTime": "2024-05-01T10:00:00Z",
    "qosClass": "Burstable",
    "containerStatuses": [{
        "name": "web", "ready": True, "restartCount": 1, "started": True,
        "image": "docker.io/library/nginx:latest", "imageID": "docker-pullable://nginx@sha256:abc",
        "containerID": "docker://abc",
        "state": {"running": {"startedAt": "2024-05-01T10:00:02Z"}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                     "startedAt": "2024-05-01T09:00:00Z", "finishedAt": "2024-05-01T09:59:00Z",
                                     "containerID": "docker://old"}},
    }],
}

SERVICE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"app": "web"}, "type": "NodePort", "sessionAffinity": "ClientIP",
             "externalTrafficPolicy": "Local", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
             "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
             "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                       {"name": "https", "port": 443, "protocol": "TCP", "appProtocol": "https"}]},
}

NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "unschedulable": False,
             "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
    "status": {
        "capacity": {"cpu": "4", "memory": "8029436Ki", "pods": "110", "ephemeral-storage": "100Gi"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
                        "lastHeartbeatTime": "2024-05-01T10:00:00Z",
                        "lastTransitionTime": "2024-05-01T09:00:00Z"}],
        "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "node-1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1",
                     "osImage": "Debian", "containerRuntimeVersion": "docker://24", "kubeletVersion": "v1.30.0",
                     "kubeProxyVersion": "v1.30.0", "operatingSystem": "linux", "architecture": "amd64"},
        "images": [{"names": ["nginx:latest"], "sizeBytes": 187000000}],
    },
}

EVENT: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "web-1.17c3f", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "u",
                       "apiVersion": "v1", "resourceVersion": "12", "fieldPath": "spec.containers{web}"},
    "reason": "Pulled", "message": "Successfully pulled image", "type": "Normal",
    "source": {"component": "kubelet", "host": "node-1"},
    "firstTimestamp": "2024-05-01T10:00:00Z", "lastTimestamp": "2024-05-01T10:00:05Z", "count": 2,
    "eventTime": "2024-05-01T10:00:00.123456Z",
    "series": {"count": 2, "lastObservedTime": "2024-05-01T10:00:05.000001Z"},
    "reportingComponent": "kubelet", "reportingInstance": "node-1", "action": "Pull",
}

LEASE: dict[str, Any] = {
    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
    "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
    "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
             "renewTime": "2024-05-01T10:00:00.000000Z", "acquireTime": "2024-05-01T09:00:00.000000Z",
             "leaseTransitions": 0},
}
