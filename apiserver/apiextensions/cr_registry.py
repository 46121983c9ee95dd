"""Registries for custom resources and for CustomResourceDefinitions themselves.

Both are :class:`apiserver.registry.Registry` with Kubernetes' per-kind rules plugged into its
hooks, so every verb keeps the generic semantics (preconditions, finalizers, dry run):

- :class:`CustomResourceRegistry` (one per served version): objects are stored at the storage
  version and served at the requested one (conversion ``None``: only ``apiVersion`` changes);
  writes are pruned of unknown fields (an error under ``fieldValidation=Strict``, a warning
  under ``Warn``), defaulted, and validated against the version's schema (one 422 ``Invalid``
  naming every field); reads are defaulted too. With a ``status`` subresource the main resource
  ignores ``status`` and ``/status`` changes only ``status``; ``metadata.generation`` moves on any
  change outside ``metadata`` (and ``status``, when it is a subresource), as Kubernetes does.
- :class:`CrdRegistry`: CRDs are defaulted and validated (:mod:`.crd_validation`), start with
  an empty status and ``storedVersions``, bump ``generation`` on spec changes, and get the
  ``customresourcecleanup.apiextensions.k8s.io`` finalizer when deleted, so the controller can
  remove their objects first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson

from apiserver import webhooks
from apiserver.apiextensions.crd_validation import default_crd, validate_crd
from apiserver.apiextensions.served import ServedVersion, served_version
from apiserver.codec import encode
from apiserver.registry import MutatingAdmission, Registry
from apiserver.storage.interface import KeyValue, Storage
from apiserver.write_options import DeleteOptions, WriteOptions
from machinery import api
from machinery.api.names import Errors
from machinery.api.validation import validate_object_meta
from machinery.errors import BadRequestError, MethodNotAllowedError, StatusCause, invalid
from machinery.resources import ResourceInfo

Obj = dict[str, Any]

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields",
})


def _check_field_validation(value: str) -> None:
    if value not in api.FIELD_VALIDATION:
        raise BadRequestError(f'fieldValidation parameter unsupported: "{value}" '
                              '(supported: "Ignore", "Warn", "Strict")')


def _unknown_fields(field_validation: str, paths: list[str]) -> list[str]:
    """Warnings for pruned fields, or a 400 under Strict (Kubernetes' strict decoding error)."""
    if not paths:
        return []
    messages = [f'unknown field "{p}"' for p in paths]
    if field_validation == "Strict":
        raise BadRequestError("strict decoding error: " + ", ".join(messages))
    return messages if field_validation == "Warn" else []


class CustomResourceRegistry(Registry):
    """Kubernetes' custom-resource strategy for one served version of a CRD."""

    def __init__(self, resource: ResourceInfo, storage: Storage,
                 mutating_admission: MutatingAdmission | None = None,
                 namespace_cache: Any = None, *, terminating: Callable[[], bool] = lambda: False) -> None:
        super().__init__(resource, storage, mutating_admission, namespace_cache)
        self.served: ServedVersion = served_version(resource)
        self.terminating = terminating
        """Whether the CRD is being deleted: creates are then refused, as kube-apiserver does."""
        # What mutating webhooks change is pruned and defaulted like the request's own fields.
        self.mutating_admission = webhooks.with_mutating_webhooks(resource, mutating_admission,
                                                                  after_patches=self._after_webhooks)
        # Reads need work only when they are served at another version or the schema has defaults.
        self.presents = (self.served.version != self.served.storage_version
                         or b'"default"' in orjson.dumps(self.served.raw_schema))

    def _after_webhooks(self, obj: Obj) -> None:
        if not self.served.preserve_unknown:
            self.served.schema.prune(obj)
        self.served.schema.default(obj)

    # ---- storage form <-> served form ------------------------------------------------------
    def present(self, obj: Obj) -> Obj:
        """A stored object as this version serves it (apiVersion, defaults), in place."""
        obj["apiVersion"] = self.resource.api_version
        self.served.schema.default(obj)
        return obj

    def _decode(self, kv: KeyValue) -> Obj:
        return self.present(super()._decode(kv))

    def _encode(self, obj: Obj) -> bytes:
        if obj.get("apiVersion") == self.served.storage_api_version:
            return encode(obj)
        return encode(dict(obj, apiVersion=self.served.storage_api_version))

    async def create(self, namespace: str | None, obj: Obj, opts: WriteOptions) -> tuple[Obj, list[str]]:
        # Also reached by a server-side apply that creates. The CRD's clean-up would miss the object.
        if self.terminating():
            raise MethodNotAllowedError("create not allowed while custom resource definition is terminating")
        return await super().create(namespace, obj, opts)

    # ---- strategy ----------------------------------------------------------------------------
    def _prepare_for_create(self, obj: Obj) -> None:
        obj["metadata"]["generation"] = 1
        if self.served.status:
            obj.pop("status", None)

    def _prepare_for_update(self, new: Obj, old: Obj) -> None:
        if self.served.status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        ignored = ("metadata", "status") if self.served.status else ("metadata",)
        changed = ({k: v for k, v in new.items() if k not in ignored}
                   != {k: v for k, v in old.items() if k not in ignored})
        generation = int((old.get("metadata") or {}).get("generation") or 1)
        new.setdefault("metadata", {})["generation"] = generation + 1 if changed else generation

    async def _admit(self, obj: Obj, opts: WriteOptions, *, old: Obj | None) -> tuple[Obj, list[str]]:
        _check_field_validation(opts.field_validation)
        r = self.resource
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise BadRequestError("json: cannot unmarshal into Go struct field ObjectMeta.metadata of type "
                                  "v1.ObjectMeta")
        unknown_meta = [f"metadata.{k}" for k in list(meta) if k not in _OBJECT_META_FIELDS]
        for k in unknown_meta:
            meta.pop(k.removeprefix("metadata."))
        pruned = [] if self.served.preserve_unknown else self.served.schema.prune(obj)
        warnings = _unknown_fields(opts.field_validation, unknown_meta + pruned)
        self.served.schema.default(obj)
        await self._mutate(obj, old, opts.dry_run)
        errs = Errors()
        validate_object_meta(errs, r.kind, obj, old)
        causes: list[StatusCause] = list(errs.causes)
        causes.extend(self.served.schema.validate(obj, old))
        if causes:
            raise invalid(r.kind, str(meta.get("name") or meta.get("generateName") or ""), causes,
                          group=r.group)
        if self.served.deprecation_warning:
            warnings.append(self.served.deprecation_warning)
        return obj, warnings


class CrdRegistry(Registry):
    """Kubernetes' CustomResourceDefinition strategy."""

    def _prepare_for_create(self, obj: Obj) -> None:
        obj["metadata"]["generation"] = 1
        obj["status"] = {"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []}
        _add_stored_version(obj)

    def _prepare_for_update(self, new: Obj, old: Obj) -> None:
        new["status"] = copy.deepcopy(old.get("status") or {})
        generation = int((old.get("metadata") or {}).get("generation") or 1)
        changed = new.get("spec") != old.get("spec")
        new.setdefault("metadata", {})["generation"] = generation + 1 if changed else generation
        _add_stored_version(new)

    async def _admit(self, obj: Obj, opts: WriteOptions, *, old: Obj | None) -> tuple[Obj, list[str]]:
        _check_field_validation(opts.field_validation)
        if not isinstance(obj.get("spec"), dict) and obj.get("spec") is not None:
            raise BadRequestError("json: cannot unmarshal into Go struct field "
                                  "CustomResourceDefinition.spec of type v1.CustomResourceDefinitionSpec")
        default_crd(obj)
        if old is None or obj.get("spec") != old.get("spec") or obj.get("metadata") != old.get("metadata"):
            validate_crd(obj, old)
        return obj, []

    def _mark_for_deletion(self, live: Obj, options: DeleteOptions) -> Obj | None:
        marked = copy.deepcopy(live)
        meta = marked["metadata"]
        if not meta.get("deletionTimestamp") and CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), CLEANUP_FINALIZER]
        return super()._mark_for_deletion(marked, options)


def _add_stored_version(crd: Obj) -> None:
    storage = next((v.get("name") for v in (crd.get("spec") or {}).get("versions") or []
                    if isinstance(v, dict) and v.get("storage") is True), None)
    status = crd.setdefault("status", {})
    stored = list(status.get("storedVersions") or [])
    if storage and storage not in stored:
        stored.append(storage)
    status["storedVersions"] = stored
