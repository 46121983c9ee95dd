"""admissionregistration.k8s.io/v1 kinds: MutatingWebhookConfiguration and ValidatingWebhookConfiguration.

Registered as kinds in ``machinery.api``; defaulted and validated by
:mod:`machinery.api.validation_webhooks`. The apiserver reads stored configurations to decide
which admission webhooks to call (``apiserver.webhooks``).
"""

from typing import ClassVar

from machinery.api.base import Bytes, Int32, K8sModel
from machinery.api.meta import LabelSelector, ObjectMeta

_PREFIX = "io.k8s.api.admissionregistration.v1"


class ServiceReference(K8sModel):
    """A Service that serves the webhook: namespace/name, optional path and port (443)."""

    k8s_prefix: ClassVar[str] = _PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("namespace", "name")
    namespace: str | None = None
    name: str | None = None
    path: str | None = None
    port: Int32 | None = None


class WebhookClientConfig(K8sModel):
    """How to reach the webhook: exactly one of ``url`` or ``service``, and the CA bundle to trust."""

    k8s_prefix: ClassVar[str] = _PREFIX
    url: str | None = None
    service: ServiceReference | None = None
    caBundle: Bytes | None = None


class RuleWithOperations(K8sModel):
    """Operations and resources a webhook is called for."""

    k8s_prefix: ClassVar[str] = _PREFIX
    operations: list[str] | None = None
    apiGroups: list[str] | None = None
    apiVersions: list[str] | None = None
    resources: list[str] | None = None
    scope: str | None = None


class MatchCondition(K8sModel):
    """A CEL expression that must hold for the webhook to be called."""

    k8s_prefix: ClassVar[str] = _PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("name", "expression")
    name: str | None = None
    expression: str | None = None


class ValidatingWebhook(K8sModel):
    """One validating admission webhook."""

    k8s_prefix: ClassVar[str] = _PREFIX
    k8s_required: ClassVar[tuple[str, ...]] = ("name", "clientConfig", "sideEffects", "admissionReviewVersions")
    name: str | None = None
    clientConfig: WebhookClientConfig | None = None
    rules: list[RuleWithOperations] | None = None
    failurePolicy: str | None = None
    matchPolicy: str | None = None
    namespaceSelector: LabelSelector | None = None
    objectSelector: LabelSelector | None = None
    sideEffects: str | None = None
    timeoutSeconds: Int32 | None = None
    admissionReviewVersions: list[str] | None = None
    matchConditions: list[MatchCondition] | None = None


class MutatingWebhook(ValidatingWebhook):
    """One mutating admission webhook; ``reinvocationPolicy`` says whether it runs again."""

    reinvocationPolicy: str | None = None


class MutatingWebhookConfiguration(K8sModel):
    """Mutating admission webhooks, called in order of configuration name, then list order."""

    k8s_prefix: ClassVar[str] = _PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (
        "admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    webhooks: list[MutatingWebhook] | None = None


class ValidatingWebhookConfiguration(K8sModel):
    """Validating admission webhooks, called in parallel once the object is final."""

    k8s_prefix: ClassVar[str] = _PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (
        "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    webhooks: list[ValidatingWebhook] | None = None
