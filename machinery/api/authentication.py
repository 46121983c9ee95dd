"""Kinds of authentication.k8s.io: TokenReview, SelfSubjectReview, TokenRequest (create-only,
answered by the apiserver, never stored).

Registered as kinds in ``machinery.api`` for OpenAPI (``kubectl explain tokenreview``); the
apiserver answers them in ``apiserver.reviews`` and ``apiserver.tokenrequest``. SelfSubjectReview
is also served as v1beta1 and v1alpha1 (kubectl 1.27 asks v1beta1): those classes carry their
definition name in ``k8s_definition``.
"""

from typing import ClassVar

from machinery.api.base import K8sModel
from machinery.api.meta import ObjectMeta

PREFIX = "io.k8s.api.authentication.v1"
GROUP = "authentication.k8s.io"


class UserInfo(K8sModel):
    """The user a token or a request authenticates as."""

    k8s_prefix: ClassVar[str] = PREFIX
    username: str | None = None
    uid: str | None = None
    groups: list[str] | None = None
    extra: dict[str, list[str]] | None = None


class TokenReviewSpec(K8sModel):
    """The token to check, and for which audiences."""

    k8s_prefix: ClassVar[str] = PREFIX
    token: str | None = None
    audiences: list[str] | None = None


class TokenReviewStatus(K8sModel):
    """Whether the token authenticated, as whom, for which audiences, or why not."""

    k8s_prefix: ClassVar[str] = PREFIX
    authenticated: bool | None = None
    user: UserInfo | None = None
    audiences: list[str] | None = None
    error: str | None = None


class TokenReview(K8sModel):
    """Authenticates a token (what a webhook or a mesh CA asks before trusting one)."""

    k8s_prefix: ClassVar[str] = PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "TokenReview")
    k8s_required: ClassVar[tuple[str, ...]] = ("spec",)
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: TokenReviewSpec | None = None
    status: TokenReviewStatus | None = None


class SelfSubjectReviewStatus(K8sModel):
    """The caller as the apiserver sees it."""

    k8s_prefix: ClassVar[str] = PREFIX
    userInfo: UserInfo | None = None


class SelfSubjectReview(K8sModel):
    """Who am I? (``kubectl auth whoami``)."""

    k8s_prefix: ClassVar[str] = PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "SelfSubjectReview")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    status: SelfSubjectReviewStatus | None = None


class SelfSubjectReviewV1beta1(SelfSubjectReview):
    """Who am I? (``kubectl auth whoami``, v1beta1)."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.authentication.v1beta1"
    k8s_definition: ClassVar[str] = "SelfSubjectReview"
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1beta1", "SelfSubjectReview")


class SelfSubjectReviewV1alpha1(SelfSubjectReview):
    """Who am I? (``kubectl auth whoami``, v1alpha1)."""

    k8s_prefix: ClassVar[str] = "io.k8s.api.authentication.v1alpha1"
    k8s_definition: ClassVar[str] = "SelfSubjectReview"
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1alpha1", "SelfSubjectReview")


class BoundObjectReference(K8sModel):
    """The object a token is bound to (Pod, Secret or Node)."""

    k8s_prefix: ClassVar[str] = PREFIX
    kind: str | None = None
    apiVersion: str | None = None
    name: str | None = None
    uid: str | None = None


class TokenRequestSpec(K8sModel):
    """Audiences, life and binding of the token asked for."""

    k8s_prefix: ClassVar[str] = PREFIX
    audiences: list[str] | None = None
    expirationSeconds: int | None = None
    boundObjectRef: BoundObjectReference | None = None


class TokenRequestStatus(K8sModel):
    """The issued token and when it expires."""

    k8s_prefix: ClassVar[str] = PREFIX
    token: str | None = None
    expirationTimestamp: str | None = None


class TokenRequest(K8sModel):
    """A token for a service account (``serviceaccounts/<name>/token``, ``kubectl create token``)."""

    k8s_prefix: ClassVar[str] = PREFIX
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = (GROUP, "v1", "TokenRequest")
    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: TokenRequestSpec | None = None
    status: TokenRequestStatus | None = None
