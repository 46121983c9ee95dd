"""core/v1 container types: Container, ports, env, resources, probes, lifecycle, security context.

Building blocks of :mod:`machinery.api.pod`; field names are exactly Kubernetes' JSON names.
"""

from typing import ClassVar

from pydantic import Field

from machinery.api.base import Int32, Int64, IntOrString, K8sModel, Quantity, merge_key


class ObjectFieldSelector(K8sModel):
    """Selects a field of the pod (metadata.name, status.podIP, ...)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("fieldPath",)
    apiVersion: str | None = None
    fieldPath: str | None = None


class ResourceFieldSelector(K8sModel):
    """Selects a container resource (limits.cpu, requests.memory, ...)."""

    k8s_required: ClassVar[tuple[str, ...]] = ("resource",)
    containerName: str | None = None
    resource: str | None = None
    divisor: Quantity | None = None


class ConfigMapKeySelector(K8sModel):
    """Selects one key of a ConfigMap."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key",)
    name: str | None = None
    key: str | None = None
    optional: bool | None = None


class SecretKeySelector(K8sModel):
    """Selects one key of a Secret."""

    k8s_required: ClassVar[tuple[str, ...]] = ("key",)
    name: str | None = None
    key: str | None = None
    optional: bool | None = None


class FileKeySelector(K8sModel):
    """Selects a key of an env file in a volume."""

    volumeName: str | None = None
    path: str | None = None
    key: str | None = None
    optional: bool | None = None


class EnvVarSource(K8sModel):
    """Where an environment variable's value comes from."""

    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    configMapKeyRef: ConfigMapKeySelector | None = None
    secretKeyRef: SecretKeySelector | None = None
    fileKeyRef: FileKeySelector | None = None


class EnvVar(K8sModel):
    """An environment variable: a literal value or a reference."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None
    value: str | None = None
    valueFrom: EnvVarSource | None = None


class ConfigMapEnvSource(K8sModel):
    """Imports every key of a ConfigMap as environment variables."""

    name: str | None = None
    optional: bool | None = None


class SecretEnvSource(K8sModel):
    """Imports every key of a Secret as environment variables."""

    name: str | None = None
    optional: bool | None = None


class EnvFromSource(K8sModel):
    """A source of many environment variables, with an optional name prefix."""

    prefix: str | None = None
    configMapRef: ConfigMapEnvSource | None = None
    secretRef: SecretEnvSource | None = None


class ContainerPort(K8sModel):
    """A network port the container listens on."""

    k8s_required: ClassVar[tuple[str, ...]] = ("containerPort",)
    name: str | None = None
    hostPort: Int32 | None = None
    containerPort: Int32 | None = None
    protocol: str | None = None
    hostIP: str | None = None


class ResourceClaim(K8sModel):
    """A reference to a pod resource claim used by this container."""

    name: str | None = None
    request: str | None = None


class ResourceRequirements(K8sModel):
    """Compute resources: requests (guaranteed, used for scheduling) and limits (caps)."""

    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None
    claims: list[ResourceClaim] | None = None


class ContainerResizePolicy(K8sModel):
    """How a resource of the container is resized in place."""

    resourceName: str | None = None
    restartPolicy: str | None = None


class VolumeMount(K8sModel):
    """Mounts a pod volume into the container's filesystem."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name", "mountPath")
    name: str | None = None
    readOnly: bool | None = None
    recursiveReadOnly: str | None = None
    mountPath: str | None = None
    subPath: str | None = None
    mountPropagation: str | None = None
    subPathExpr: str | None = None


class VolumeDevice(K8sModel):
    """Maps a raw block volume to a device path in the container."""

    name: str | None = None
    devicePath: str | None = None


class ExecAction(K8sModel):
    """Runs a command inside the container; exit code 0 is success."""

    command: list[str] | None = None


class HTTPHeader(K8sModel):
    """A header sent with an HTTP probe."""

    name: str | None = None
    value: str | None = None


class HTTPGetAction(K8sModel):
    """An HTTP GET against the container; 200-399 is success."""

    k8s_required: ClassVar[tuple[str, ...]] = ("port",)
    path: str | None = None
    port: IntOrString | None = None
    host: str | None = None
    scheme: str | None = None
    httpHeaders: list[HTTPHeader] | None = None


class TCPSocketAction(K8sModel):
    """Opens a TCP connection; success if it connects."""

    k8s_required: ClassVar[tuple[str, ...]] = ("port",)
    port: IntOrString | None = None
    host: str | None = None


class GRPCAction(K8sModel):
    """Calls the gRPC health checking protocol."""

    port: Int32 | None = None
    service: str | None = None


class SleepAction(K8sModel):
    """Sleeps for a number of seconds."""

    seconds: Int64 | None = None


class Probe(K8sModel):
    """A periodic health check (liveness, readiness or startup) with its timing."""

    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initialDelaySeconds: Int32 | None = None
    timeoutSeconds: Int32 | None = None
    periodSeconds: Int32 | None = None
    successThreshold: Int32 | None = None
    failureThreshold: Int32 | None = None
    terminationGracePeriodSeconds: Int64 | None = None


class LifecycleHandler(K8sModel):
    """An action run at a container lifecycle hook."""

    exec: ExecAction | None = None
    httpGet: HTTPGetAction | None = None
    tcpSocket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


class Lifecycle(K8sModel):
    """Hooks run after a container starts and before it stops."""

    postStart: LifecycleHandler | None = None
    preStop: LifecycleHandler | None = None
    stopSignal: str | None = None


class Capabilities(K8sModel):
    """Linux capabilities added to or dropped from the container."""

    add: list[str] | None = None
    drop: list[str] | None = None


class SELinuxOptions(K8sModel):
    """SELinux labels applied to the container."""

    user: str | None = None
    role: str | None = None
    type: str | None = None
    level: str | None = None


class WindowsSecurityContextOptions(K8sModel):
    """Windows-specific security options."""

    gmsaCredentialSpecName: str | None = None
    gmsaCredentialSpec: str | None = None
    runAsUserName: str | None = None
    hostProcess: bool | None = None


class SeccompProfile(K8sModel):
    """The seccomp profile (RuntimeDefault, Unconfined, Localhost)."""

    type: str | None = None
    localhostProfile: str | None = None


class AppArmorProfile(K8sModel):
    """The AppArmor profile (RuntimeDefault, Unconfined, Localhost)."""

    type: str | None = None
    localhostProfile: str | None = None


class SecurityContext(K8sModel):
    """Container-level security settings; they override the pod's."""

    capabilities: Capabilities | None = None
    privileged: bool | None = None
    seLinuxOptions: SELinuxOptions | None = None
    windowsOptions: WindowsSecurityContextOptions | None = None
    runAsUser: Int64 | None = None
    runAsGroup: Int64 | None = None
    runAsNonRoot: bool | None = None
    readOnlyRootFilesystem: bool | None = None
    allowPrivilegeEscalation: bool | None = None
    procMount: str | None = None
    seccompProfile: SeccompProfile | None = None
    appArmorProfile: AppArmorProfile | None = None


class Container(K8sModel):
    """A container of a pod: image, command, ports, environment, resources, probes."""

    k8s_required: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    workingDir: str | None = None
    ports: list[ContainerPort] | None = Field(None, json_schema_extra=merge_key("containerPort"))
    envFrom: list[EnvFromSource] | None = None
    env: list[EnvVar] | None = Field(None, json_schema_extra=merge_key("name"))
    resources: ResourceRequirements | None = None
    resizePolicy: list[ContainerResizePolicy] | None = None
    restartPolicy: str | None = None
    restartPolicyRules: list[dict[str, object]] | None = None
    volumeMounts: list[VolumeMount] | None = Field(None, json_schema_extra=merge_key("mountPath"))
    volumeDevices: list[VolumeDevice] | None = Field(None, json_schema_extra=merge_key("devicePath"))
    livenessProbe: Probe | None = None
    readinessProbe: Probe | None = None
    startupProbe: Probe | None = None
    lifecycle: Lifecycle | None = None
    terminationMessagePath: str | None = None
    terminationMessagePolicy: str | None = None
    imagePullPolicy: str | None = None
    securityContext: SecurityContext | None = None
    stdin: bool | None = None
    stdinOnce: bool | None = None
    tty: bool | None = None


class EphemeralContainer(Container):
    """A debugging container added to a running pod (kubectl debug)."""

    targetContainerName: str | None = None
