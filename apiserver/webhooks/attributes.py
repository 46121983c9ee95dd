"""What one admission call is about: Kubernetes' admission ``Attributes``.

:class:`Call` names the operation, the resource (and subresource) the request addressed, the
object and the stored object, the caller and the options; the dispatcher matches webhooks against
it and builds the AdmissionReview from it. :class:`RequestScope` is what the request middleware
knows before any handler runs (the caller, the addressed resource, dry run) plus the warnings the
webhooks return, which leave as ``Warning`` headers on the response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apiserver.authn import UserInfo
from machinery.resources import ResourceInfo

Obj = dict[str, Any]

CREATE, UPDATE, DELETE, CONNECT = "CREATE", "UPDATE", "DELETE", "CONNECT"

OPTIONS_KIND = {CREATE: "CreateOptions", UPDATE: "UpdateOptions", DELETE: "DeleteOptions"}

# Requests never sent to webhooks: the configurations themselves, as in Kubernetes (a broken
# webhook must never lock its own configuration).
EXEMPT_GROUP_RESOURCES = frozenset({
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
})


@dataclass
class RequestScope:
    """The request being served, as admission sees it."""

    user: UserInfo
    resource: ResourceInfo
    subresource: str
    dry_run: bool
    field_manager: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class Call:
    """One admission decision: Kubernetes' admission attributes."""

    operation: str
    resource: ResourceInfo
    subresource: str
    namespace: str
    name: str
    object: Obj | None
    old_object: Obj | None
    user: UserInfo
    dry_run: bool
    options: Obj | None = None
    kind: tuple[str, str, str] = ("", "", "")
    """(group, version, kind) of ``object``: the resource's kind unless a subresource has its own."""

    @property
    def namespace_resource(self) -> bool:
        """The request is about a Namespace object (whose own labels the namespaceSelector sees)."""
        return self.resource.group == "" and self.resource.plural == "namespaces" and not self.subresource


def options_for(operation: str, *, dry_run: bool, field_manager: str = "", extra: Obj | None = None) -> Obj | None:
    """The CreateOptions/UpdateOptions/DeleteOptions sent in the review (``meta.k8s.io/v1``)."""
    kind = OPTIONS_KIND.get(operation)
    if kind is None:
        return None
    options: Obj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if dry_run:
        options["dryRun"] = ["All"]
    if field_manager and operation != DELETE:
        options["fieldManager"] = field_manager
    if extra:
        options.update(extra)
    return options
