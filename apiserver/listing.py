"""List requests: selectors, ``limit``/``continue`` paging and ``resourceVersion`` semantics.

- ``resourceVersion`` unset: a consistent read from the store (paged with ``limit``).
- ``resourceVersion=0``: any recent state; served from the watch cache, unpaged.
- ``resourceVersion=N`` with ``resourceVersionMatch=Exact``: the store as of revision N.
- ``resourceVersion=N`` otherwise (NotOlderThan): the watch cache once it has reached N,
  or the store.
A ``continue`` token carries the revision and the last key; once that revision is
compacted the token is refused with 410 Expired, as in Kubernetes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from apiserver.codec import with_resource_version
from apiserver.storage.interface import CompactedError, FutureRevisionError, Storage
from apiserver.watchcache import Filter, WatchCache, WatchCaches, match_all
from machinery.errors import BadRequestError, GoneError, TimeoutError_
from machinery.fieldselector import parse_field_selector
from machinery.resources import ResourceInfo
from machinery.selectors import parse_label_selector


def make_filter(resource: ResourceInfo, label_selector: str, field_selector: str) -> Filter:
    """A predicate for the selectors of a request (400 on a bad selector)."""
    labels = parse_label_selector(label_selector) if label_selector else None
    fields = parse_field_selector(field_selector) if field_selector else None
    if fields is not None:
        fields.validate_for(resource.kind)
        if fields.empty():
            fields = None
    if labels is not None and labels.empty():
        labels = None
    kind = resource.kind
    if labels is None and fields is None:
        return match_all
    if fields is None:
        assert labels is not None
        return lambda obj: labels.matches((obj.get("metadata") or {}).get("labels"))
    if labels is None:
        return lambda obj: fields.matches(obj, kind)
    return lambda obj: labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj, kind)


@dataclass(frozen=True)
class ListQuery:
    namespace: str | None
    matches: Filter
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class ListPage:
    """One page of a list: each item's JSON (always) and decoded object (when asked for)."""

    raws: list[bytes]
    objects: list[dict[str, Any]] | None
    resource_version: str
    continue_token: str = ""


def _encode_continue(revision: int, last_key: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadRequestError(f"continue key is not valid: {exc}") from exc


def _parse_rv(value: str) -> int:
    try:
        rv = int(value)
    except ValueError:
        raise BadRequestError(f'resourceVersion: Invalid value: "{value}": must be a number') from None
    if rv < 0:
        raise BadRequestError(f'resourceVersion: Invalid value: "{value}": must be non-negative')
    return rv


async def list_objects(resource: ResourceInfo, storage: Storage, caches: WatchCaches, q: ListQuery, *,
                       consistent_wait: float, need_objects: bool = False) -> ListPage:
    """Answer a list.

    A consistent list (no resourceVersion) asks the store for its current revision and is served
    from the cache once the cache has caught up with it, which it does within ``consistent_wait``
    seconds when every write to the store is also an event the cache sees; otherwise (or with
    ``consistent_wait=0``) it is read from the store. Kubernetes does the same since 1.31
    (ConsistentListFromCache).
    """
    if q.continue_token and q.resource_version:
        raise BadRequestError("specifying resource version is not allowed when using continue")
    if q.resource_version_match and not q.resource_version:
        raise BadRequestError("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if q.resource_version_match not in ("", "Exact", "NotOlderThan"):
        raise BadRequestError(f'resourceVersionMatch: Unsupported value: "{q.resource_version_match}"')
    cache = caches.get(resource)
    if q.continue_token:
        revision, start_after = _decode_continue(q.continue_token)
        return await _list_store(resource, storage, q, revision=revision, start_after=start_after,
                                 need_objects=need_objects)
    if q.resource_version_match == "Exact":
        return await _list_store(resource, storage, q, revision=_parse_rv(q.resource_version), start_after="",
                                 need_objects=need_objects)
    if q.resource_version:
        # "0": any state; "N" (NotOlderThan): a state at least as new as N.
        wanted = _parse_rv(q.resource_version)
        if await caches.wait_for_revision(wanted, timeout=3.0):
            return _list_cache(cache, q, need_objects=need_objects)
        raise TimeoutError_(f"Too large resource version: {wanted}, current: {caches.revision}",
                            retry_after_seconds=1)
    if consistent_wait > 0:
        current = await storage.current_revision()
        if await caches.wait_for_revision(current, timeout=consistent_wait):
            page = _list_cache(cache, q, need_objects=need_objects)
            if not page.continue_token:
                return page
    return await _list_store(resource, storage, q, revision=0, start_after="", need_objects=need_objects)


def _list_cache(cache: WatchCache, q: ListQuery, *, need_objects: bool) -> ListPage:
    """From the cache; a page that needs a continue token is left to the store (its snapshot)."""
    keys, revision = cache.snapshot(q.namespace, None if q.matches is match_all else q.matches)
    token = ""
    if q.limit and len(keys) > q.limit:
        keys = keys[:q.limit]
        token = _encode_continue(revision, keys[-1])
    raws = [cache.raw[k] for k in keys]
    objects = [orjson.loads(raw) for raw in raws] if need_objects else None
    return ListPage(raws, objects, str(revision), token)


async def _list_store(resource: ResourceInfo, storage: Storage, q: ListQuery, *, revision: int,
                      start_after: str, need_objects: bool) -> ListPage:
    prefix = resource.storage_prefix(q.namespace if resource.namespaced else None)
    raws: list[bytes] = []
    objects: list[dict[str, Any]] = []
    decode_all = need_objects or q.matches is not match_all
    # Selectors filter after the read, so keep reading until the page is full (as Kubernetes does).
    batch = max(q.limit, 1) if q.limit else 0
    read_revision = revision
    while True:
        try:
            result = await storage.list(prefix, revision=read_revision, limit=batch, start_after=start_after)
        except CompactedError as exc:
            if q.continue_token:
                raise GoneError("The provided continue parameter is too old to display a consistent list "
                                "result. You can start a new list without the continue parameter, or use the "
                                "continue token in this response to retrieve the remainder of the results.",
                                ) from exc
            raise GoneError(f"too old resource version: {revision} ({exc.compacted})") from exc
        except FutureRevisionError as exc:
            raise TimeoutError_(f"Too large resource version: {revision}, current: "
                                f"{await storage.current_revision()}", retry_after_seconds=1) from exc
        read_revision = result.revision
        full = more = False
        for index, kv in enumerate(result.items):
            raw = with_resource_version(kv.value, kv.mod_revision)
            start_after = kv.key
            if decode_all:
                obj = orjson.loads(raw)
                if not q.matches(obj):
                    continue
                objects.append(obj)
            raws.append(raw)
            if q.limit and len(raws) >= q.limit:
                full = True
                more = result.more or index + 1 < len(result.items)
                break
        if full or not result.more or not q.limit:
            token = _encode_continue(read_revision, start_after) if full and more else ""
            return ListPage(raws, objects if need_objects else None, str(read_revision), token)
