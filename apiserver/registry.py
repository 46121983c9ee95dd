"""Generic REST storage for one resource type: the semantics behind every verb.

``Registry`` turns API verbs into storage operations with Kubernetes' rules: server-set
metadata (uid, creationTimestamp, generation, generateName), optimistic concurrency
(resourceVersion preconditions -> 409 Conflict), admission (defaulting + validation from
``machinery.api``), namespaces that must exist and not be terminating, graceful deletion
with ``deletionTimestamp`` and finalizers, ``dryRun``. Handlers (``handlers.py``) parse HTTP
and call these methods; nothing else writes to the store. The options a write takes live in
:mod:`apiserver.write_options`, the graceful deletion rules in :mod:`apiserver.graceful_deletion`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from apiserver import strategy, webhooks
from apiserver.codec import decode, encode
from apiserver.graceful_deletion import finished_deleting, mark_for_deletion
from apiserver.storage.interface import (
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionConflictError,
    Storage,
)
from apiserver.write_options import DeleteOptions, WriteOptions, resource_version_number, update_precondition
from machinery import api
from machinery.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
)
from machinery.meta import now_rfc3339
from machinery.resources import NAMESPACES, ResourceInfo, lookup

__all__ = [
    "DeleteOptions",
    "MutatingAdmission",
    "Mutation",
    "Registry",
    "ValidatingAdmission",
    "WriteOptions",
    "registry_for",
]

MAX_CONFLICT_RETRIES = 16
# Kubernetes' NamespaceLifecycle admission refuses to delete these.
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
GENERATE_NAME_RETRIES = 8

Mutation = Callable[[dict[str, Any]], dict[str, Any]]
# (new object, stored object or None on create, dry run) -> None; mutates the new object in place.
MutatingAdmission = Callable[[dict[str, Any], dict[str, Any] | None, bool], Awaitable[None]]
# Same arguments; may only refuse (LimitRanger's checks, ResourceQuota). Runs after the validating
# webhooks, on creates and main-resource updates, never on subresource writes.
ValidatingAdmission = MutatingAdmission


class Registry:
    """Kubernetes semantics for one resource type over a :class:`Storage`."""

    validating_admission: ValidatingAdmission | None = None
    """Built-in validating admission, set by the apiserver's context after construction."""

    def __init__(self, resource: ResourceInfo, storage: Storage,
                 mutating_admission: MutatingAdmission | None = None,
                 namespace_cache: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        self.resource = resource
        self.storage = storage
        # Built-in mutating admission, then the mutating webhooks of the request (apiserver.webhooks).
        self.mutating_admission = webhooks.with_mutating_webhooks(resource, mutating_admission)
        # Namespace lookups on create come from the namespaces watch cache when one is given.
        self.namespace_cache = namespace_cache

    # ---- helpers -------------------------------------------------------------------------
    def key(self, namespace: str | None, name: str) -> str:
        return self.resource.storage_key(namespace, name)

    def _not_found(self, name: str) -> NotFoundError:
        r = self.resource
        return NotFoundError(f'{r.group_resource} "{name}" not found', name=name, group=r.group, kind=r.plural)

    def _conflict(self, name: str) -> ConflictError:
        r = self.resource
        return ConflictError(
            f'Operation cannot be fulfilled on {r.group_resource} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            name=name, group=r.group, kind=r.plural,
        )

    async def _check_namespace(self, namespace: str | None, name: str) -> None:
        if not self.resource.namespaced or namespace is None:
            return
        ns = self.namespace_cache(namespace) if self.namespace_cache is not None else None
        if ns is None:
            # Not cached (yet): the store is the authority.
            kv = await self.storage.get(NAMESPACES.storage_key(None, namespace))
            if kv is None:
                raise NotFoundError(f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
            ns = decode(kv)
        if (ns.get("metadata") or {}).get("deletionTimestamp") or (ns.get("status") or {}).get(
            "phase"
        ) == "Terminating":
            raise ForbiddenError(
                f'{self.resource.group_resource} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                name=name, group=self.resource.group, kind=self.resource.plural,
            )

    async def _admit(self, obj: dict[str, Any], opts: WriteOptions, *, old: dict[str, Any] | None
                     ) -> tuple[dict[str, Any], list[str]]:
        """Decode + default (``machinery.api.prepare``), mutating admission, then validation."""
        r = self.resource
        prepared, warnings = api.prepare(obj, api_version=r.api_version, kind=r.kind,
                                         field_validation=opts.field_validation)
        await self._mutate(prepared, old, opts.dry_run)
        api.validate(prepared, old=old)
        return prepared, warnings

    async def _mutate(self, obj: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> None:
        """Mutating admission (built-in, then webhooks); on create, then the name from ``generateName``:
        Kubernetes resolves it after mutating admission (webhooks see an empty name) and before
        validation and the validating webhooks (which see the final one)."""
        if self.mutating_admission is not None:
            await self.mutating_admission(obj, old, dry_run)
        if old is None:
            strategy.generate_name(obj)

    # Kinds with rules of their own (custom resources, CRDs) override these hooks.
    presents = False
    """True when stored objects differ from what clients read (lists and watches call :meth:`present`)."""

    def present(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A stored object as clients read it (in place)."""
        return obj

    def _decode(self, kv: KeyValue) -> dict[str, Any]:
        """A stored object as this registry serves it."""
        return decode(kv)

    def _encode(self, obj: dict[str, Any]) -> bytes:
        """An object as it is stored."""
        return encode(obj)

    def _prepare_for_create(self, obj: dict[str, Any]) -> None:
        strategy.prepare_for_create(obj)

    def _prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        strategy.prepare_for_update(new, old)

    def _prepare_for_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        return strategy.prepare_for_status_update(new, old)

    def _fill_type(self, obj: dict[str, Any]) -> None:
        """apiVersion/kind default to the URL's; given ones must match it."""
        r = self.resource
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        for field, value in (("apiVersion", api_version), ("kind", kind)):
            if value is not None and not isinstance(value, str):
                raise BadRequestError(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                                      f"TypeMeta.{field} of type string")
        if api_version and api_version != r.api_version:
            raise BadRequestError(f"the API version in the data ({api_version}) does not match the expected "
                                  f"API version ({r.api_version})")
        if kind and kind != r.kind:
            raise BadRequestError(f"the kind in the data ({kind}) does not match the expected kind ({r.kind})")
        obj["apiVersion"] = r.api_version
        obj["kind"] = r.kind

    def _check_identity(self, obj: dict[str, Any], namespace: str | None, name: str | None) -> None:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequestError("metadata: must be an object")
        if self.resource.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise BadRequestError(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if namespace:
                meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            body_name = meta.get("name")
            if body_name and body_name != name:
                raise BadRequestError(
                    f'the name of the object ({body_name}) does not match the name on the URL ({name})'
                )
            meta["name"] = name

    # ---- reads ---------------------------------------------------------------------------
    async def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        kv = await self.storage.get(self.key(namespace, name))
        if kv is None:
            raise self._not_found(name)
        return self._decode(kv)

    # ---- create --------------------------------------------------------------------------
    async def create(self, namespace: str | None, obj: dict[str, Any], opts: WriteOptions
                     ) -> tuple[dict[str, Any], list[str]]:
        obj = copy.deepcopy(obj)
        self._fill_type(obj)
        self._check_identity(obj, namespace, None)
        meta = obj["metadata"]
        if self.resource.namespaced and not meta.get("namespace"):
            raise BadRequestError("the namespace of the object is required")
        namespace = meta.get("namespace")
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if resource_version_number(meta.pop("resourceVersion", None)):
            # Like Kubernetes, only a version that parses as a number other than 0 is refused.
            raise BadRequestError("resourceVersion should not be set on objects to be created")
        await self._check_namespace(namespace, meta.get("name") or meta.get("generateName", ""))
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "selfLink", "managedFields"):
            meta.pop(field, None)
        self._prepare_for_create(obj)
        # A kind's create rules may need the UID early (a Job's generated selector names it); either
        # way webhooks neither see nor choose it: Kubernetes fills uid and creationTimestamp after
        # mutating admission and before validating admission.
        uid = obj["metadata"].pop("uid", None) or str(uuid.uuid4())
        obj, warnings = await self._admit(obj, opts, old=None)
        strategy.generate_name(obj)  # for registries whose admission has no mutating step
        generated = generated and bool(obj["metadata"].get("generateName"))
        obj["metadata"]["uid"] = uid
        obj["metadata"]["creationTimestamp"] = now_rfc3339()
        await webhooks.validate(self.resource, obj, None, opts.dry_run)
        if self.validating_admission is not None:
            await self.validating_admission(obj, None, opts.dry_run)
        if opts.dry_run:
            return obj, warnings
        for attempt in range(GENERATE_NAME_RETRIES if generated else 1):
            key = self.key(namespace, obj["metadata"]["name"])
            try:
                rev = await self.storage.create(key, self._encode(obj))
            except KeyExistsError:
                if generated and attempt + 1 < GENERATE_NAME_RETRIES:
                    obj["metadata"].pop("name")
                    strategy.generate_name(obj)
                    continue
                r = self.resource
                name = obj["metadata"]["name"]
                raise AlreadyExistsError(f'{r.group_resource} "{name}" already exists',
                                         name=name, group=r.group, kind=r.plural) from None
            obj["metadata"]["resourceVersion"] = str(rev)
            return obj, warnings
        raise AssertionError("unreachable")

    # ---- update / patch ------------------------------------------------------------------
    async def update(self, namespace: str | None, name: str, obj: dict[str, Any], opts: WriteOptions,
                     *, subresource: str = "") -> tuple[dict[str, Any], list[str]]:
        """PUT: replace the object; a stale ``metadata.resourceVersion`` is a 409."""
        obj = copy.deepcopy(obj)
        self._fill_type(obj)
        self._check_identity(obj, namespace, name)
        expected = update_precondition(obj["metadata"].get("resourceVersion"))
        return await self._write(namespace, name, lambda _live: obj, opts,
                                 subresource=subresource, precondition_rv=expected)

    async def mutate(self, namespace: str | None, name: str, mutation: Mutation, opts: WriteOptions,
                     *, subresource: str = "", create_missing: Callable[[], dict[str, Any]] | None = None,
                     ) -> tuple[dict[str, Any], list[str]]:
        """Read-modify-write with retries on conflict (PATCH, scale, binding, finalize).

        ``mutation`` receives a copy of the live object and returns the desired one; a
        ``metadata.resourceVersion`` it leaves set (e.g. from the patch) is a precondition.
        """
        return await self._write(namespace, name, mutation, opts, subresource=subresource,
                                 precondition_rv=None, create_missing=create_missing)

    async def _write(self, namespace: str | None, name: str, mutation: Mutation, opts: WriteOptions, *,
                     subresource: str, precondition_rv: str | None,
                     create_missing: Callable[[], dict[str, Any]] | None = None,
                     ) -> tuple[dict[str, Any], list[str]]:
        key = self.key(namespace, name)
        for _ in range(MAX_CONFLICT_RETRIES):
            kv = await self.storage.get(key)
            if kv is None:
                if create_missing is not None:
                    return await self.create(namespace, create_missing(), opts)
                raise self._not_found(name)
            live = self._decode(kv)
            desired = mutation(copy.deepcopy(live))
            self._fill_type(desired)
            self._check_identity(desired, namespace, name)
            wanted_rv = precondition_rv or None
            body_rv = update_precondition(desired["metadata"].get("resourceVersion"))
            if precondition_rv is None and body_rv and body_rv != live["metadata"]["resourceVersion"]:
                wanted_rv = body_rv
            if wanted_rv is not None and wanted_rv != live["metadata"]["resourceVersion"]:
                raise self._conflict(name)
            if subresource == "status":
                desired = self._prepare_for_status_update(desired, live)
            elif subresource == "finalize":
                pass
            else:
                self._prepare_for_update(desired, live)
            meta = desired["metadata"]
            live_meta = live["metadata"]
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if field in live_meta:
                    meta[field] = live_meta[field]
                else:
                    meta.pop(field, None)
            if live_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(live_meta.get("finalizers") or [])
                if added:
                    raise ForbiddenError(
                        f'{self.resource.group_resource} "{name}" is forbidden: no new finalizers can be added '
                        "if the object is being deleted", name=name, kind=self.resource.plural)
            meta.pop("managedFields", None)
            meta.pop("resourceVersion", None)
            # A binding is not a pod update: nodeName is immutable to everyone but the scheduler.
            desired, warnings = await self._admit(desired, opts, old=None if subresource == "binding" else live)
            await webhooks.validate(self.resource, desired, None if subresource == "binding" else live, opts.dry_run)
            if self.validating_admission is not None and not subresource:
                await self.validating_admission(desired, live, opts.dry_run)
            if self._unchanged(desired, live):
                return live, warnings
            if opts.dry_run:
                desired["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                return desired, warnings
            if self._finished_deleting(desired):
                await self._delete_now(key, kv.mod_revision, desired)
                return desired, warnings
            try:
                rev = await self.storage.update(key, self._encode(desired), expected_revision=kv.mod_revision)
            except RevisionConflictError:
                if wanted_rv is not None:
                    raise self._conflict(name) from None
                continue
            except KeyNotFoundError:
                raise self._not_found(name) from None
            desired["metadata"]["resourceVersion"] = str(rev)
            return desired, warnings
        raise self._conflict(name)

    @staticmethod
    def _unchanged(desired: dict[str, Any], live: dict[str, Any]) -> bool:
        """Kubernetes skips no-op writes: the resourceVersion does not move."""
        a = dict(desired, metadata={k: v for k, v in desired["metadata"].items() if k != "resourceVersion"})
        b = dict(live, metadata={k: v for k, v in live["metadata"].items() if k != "resourceVersion"})
        return a == b

    def _finished_deleting(self, obj: dict[str, Any]) -> bool:
        return finished_deleting(obj)

    async def _delete_now(self, key: str, revision: int, obj: dict[str, Any]) -> None:
        try:
            deleted = await self.storage.delete(key, expected_revision=revision)
        except RevisionConflictError:
            raise self._conflict(obj["metadata"]["name"]) from None
        except KeyNotFoundError:
            raise self._not_found(obj["metadata"]["name"]) from None
        obj["metadata"]["resourceVersion"] = str(deleted.mod_revision)

    # ---- delete --------------------------------------------------------------------------
    async def delete(self, namespace: str | None, name: str, options: DeleteOptions
                     ) -> tuple[dict[str, Any], bool]:
        """Delete, or mark for deletion. Returns (object, gone_now)."""
        if self.resource.kind == "Namespace" and name in IMMORTAL_NAMESPACES:
            raise ForbiddenError(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                 name=name, kind="namespaces")
        key = self.key(namespace, name)
        for _ in range(MAX_CONFLICT_RETRIES):
            kv = await self.storage.get(key)
            if kv is None:
                raise self._not_found(name)
            live = self._decode(kv)
            meta = live["metadata"]
            if options.precondition_uid and options.precondition_uid != meta.get("uid"):
                raise ConflictError(
                    f"Precondition failed: UID in precondition: {options.precondition_uid}, "
                    f"UID in object meta: {meta.get('uid')}", name=name, kind=self.resource.plural)
            if (options.precondition_resource_version
                    and options.precondition_resource_version != meta["resourceVersion"]):
                raise ConflictError(
                    f"Precondition failed: ResourceVersion in precondition: "
                    f"{options.precondition_resource_version}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}", name=name, kind=self.resource.plural)
            await webhooks.admit_delete(self.resource, live, options)
            marked = self._mark_for_deletion(live, options)
            if marked is None:
                if options.dry_run:
                    return live, True
                try:
                    deleted = await self.storage.delete(key, expected_revision=kv.mod_revision)
                except RevisionConflictError:
                    continue
                except KeyNotFoundError:
                    raise self._not_found(name) from None
                live["metadata"]["resourceVersion"] = str(deleted.mod_revision)
                return live, True
            if marked == live or options.dry_run:
                return marked, False
            try:
                rev = await self.storage.update(key, self._encode(marked), expected_revision=kv.mod_revision)
            except RevisionConflictError:
                continue
            marked["metadata"]["resourceVersion"] = str(rev)
            return marked, False
        raise self._conflict(name)

    def _mark_for_deletion(self, live: dict[str, Any], options: DeleteOptions) -> dict[str, Any] | None:
        """The object marked for deletion, or None when it can go at once (kinds with rules of their own
        override this)."""
        return mark_for_deletion(live, options)


def registry_for(group: str, version: str, plural: str, storage: Storage) -> Registry | None:
    resource = lookup(group, version, plural)
    return Registry(resource, storage) if resource else None
