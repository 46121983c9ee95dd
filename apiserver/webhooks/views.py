"""What webhooks see when a subresource's object has a kind of its own.

Kubernetes sends webhooks the object of the request, and for some subresources that is not the
resource's own kind:

- ``scale`` (``deployments/scale``, ``replicasets/scale``, ``statefulsets/scale``, custom
  resources with a scale subresource): an ``autoscaling/v1`` ``Scale``, on UPDATE, with the
  current Scale as ``oldObject``. The scale handler stores the resource's whole object, so it
  hands admission an :class:`ObjectView` (:func:`apiserver.webhooks.viewed_as`): the webhooks
  get the view of the object and of the stored object, and what a mutating webhook changes in
  the Scale's ``spec.replicas`` is written back to the object before validation.
- ``pods/binding`` (a ``v1`` ``Binding``) and ``pods/eviction`` (a ``policy/v1`` ``Eviction``):
  CREATE with the request's body as the object and no ``oldObject``; the handler calls
  :func:`apiserver.webhooks.admit_subresource_create` before it acts, and acts on the
  (possibly patched) body. The pod writes these subresources cause are not sent to webhooks
  again, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

SCALE_KIND = ("autoscaling", "v1", "Scale")
BINDING_KIND = ("", "v1", "Binding")
EVICTION_KINDS = {"policy/v1": ("policy", "v1", "Eviction"), "policy/v1beta1": ("policy", "v1beta1", "Eviction")}


@dataclass(frozen=True)
class ObjectView:
    """How to show an object to webhooks as another kind, and take their changes back."""

    kind: tuple[str, str, str]
    """(group, version, kind) of the view."""
    view: Callable[[Obj], Obj]
    """The view of an object (a new dict)."""
    write_back: Callable[[Obj, Obj], None]
    """``write_back(obj, view)``: apply what the view may change to ``obj`` (in place)."""


def eviction_kind(eviction: Obj) -> tuple[str, str, str]:
    """The kind an Eviction was sent as (``policy/v1`` unless the body says ``policy/v1beta1``)."""
    return EVICTION_KINDS.get(str(eviction.get("apiVersion") or ""), EVICTION_KINDS["policy/v1"])
