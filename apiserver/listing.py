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

from apiserver.codec import decode
from apiserver.storage.interface import CompactedError, FutureRevisionError, Storage
from apiserver.watchcache import Filter, WatchCache
from machinery.errors import BadRequestError, GoneError, TimeoutError_
from machinery.resources import ResourceInfo
from machinery.selectors import parse_field_selector, parse_label_selector


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
        return _match_all
    if fields is None:
        assert labels is not None
        return lambda obj: labels.matches((obj.get("metadata") or {}).get("labels"))
    if labels is None:
        return lambda obj: fields.matches(obj, kind)
    return lambda obj: labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj, kind)


def _match_all(obj: dict[str, Any]) -> bool:
    return True


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
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


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


async def list_objects(resource: ResourceInfo, storage: Storage, cache: WatchCache, q: ListQuery) -> ListPage:
    if q.continue_token and q.resource_version:
        raise BadRequestError("specifying resource version is not allowed when using continue")
    if q.resource_version_match and not q.resource_version:
        raise BadRequestError("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if q.resource_version_match not in ("", "Exact", "NotOlderThan"):
        raise BadRequestError(f'resourceVersionMatch: Unsupported value: "{q.resource_version_match}"')
    if q.resource_version == "0" and not q.continue_token and q.resource_version_match != "Exact":
        items, rev = cache.snapshot(q.namespace, q.matches)
        return ListPage(items, str(rev))
    if q.resource_version and q.resource_version_match != "Exact":
        wanted = _parse_rv(q.resource_version)
        if cache.revision >= wanted and not q.limit:
            items, rev = cache.snapshot(q.namespace, q.matches)
            return ListPage(items, str(rev))
        return await _list_store(resource, storage, q, revision=0, start_after="")
    if q.continue_token:
        revision, start_after = _decode_continue(q.continue_token)
        return await _list_store(resource, storage, q, revision=revision, start_after=start_after)
    revision = _parse_rv(q.resource_version) if q.resource_version else 0
    return await _list_store(resource, storage, q, revision=revision, start_after="")


async def _list_store(resource: ResourceInfo, storage: Storage, q: ListQuery, *, revision: int,
                      start_after: str) -> ListPage:
    prefix = resource.storage_prefix(q.namespace if resource.namespaced else None)
    items: list[dict[str, Any]] = []
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
            obj = decode(kv)
            if q.matches(obj):
                items.append(obj)
            start_after = kv.key
            if q.limit and len(items) >= q.limit:
                full = True
                more = result.more or index + 1 < len(result.items)
                break
        if full or not result.more or not q.limit:
            token = _encode_continue(read_revision, start_after) if full and more else ""
            return ListPage(items, str(read_revision), token)
