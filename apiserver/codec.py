"""Object <-> stored bytes, and request bodies -> objects.

Objects are stored as JSON without ``metadata.resourceVersion``: the store's ``mod_revision``
is the resourceVersion and is put back on every read (as Kubernetes does over etcd).
Request bodies may be JSON, YAML or Kubernetes protobuf (kubectl >= 1.32 imperative
``create``); a missing Content-Type means JSON (the Python client sends none).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import yaml

from apiserver.storage.interface import KeyValue
from machinery.errors import BadRequestError, UnsupportedMediaTypeError

JSON_TYPES = frozenset({"", "application/json", "*/*", "text/plain"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"})
PROTOBUF_TYPE = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = frozenset({
    "application/strategic-merge-patch+json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
})


_METADATA_FIRST = b'{"metadata":{'


def encode(obj: dict[str, Any]) -> bytes:
    """Stored form: JSON with ``metadata`` first and no resourceVersion.

    Putting ``metadata`` first lets :func:`with_resource_version` add the resourceVersion to
    stored bytes without decoding them (lists and watches send stored objects as they are).
    """
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return orjson.dumps({"metadata": meta, **{k: v for k, v in obj.items() if k != "metadata"}})


def with_resource_version(value: bytes, revision: int) -> bytes:
    """The stored JSON with ``metadata.resourceVersion`` set, spliced in without decoding."""
    if value.startswith(_METADATA_FIRST):
        head = len(_METADATA_FIRST)
        sep = b"" if value[head:head + 1] == b"}" else b","
        return b'%s"resourceVersion":"%d"%s%s' % (value[:head], revision, sep, value[head:])
    obj = decode_value(value, revision)
    return orjson.dumps(obj)


def decode(kv: KeyValue) -> dict[str, Any]:
    """A stored value with its resourceVersion set from the revision."""
    return decode_value(kv.value, kv.mod_revision)


def decode_value(value: bytes, revision: int) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(value)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    meta["resourceVersion"] = str(revision)
    return obj


MAX_DEPTH = 100
"""Deepest nesting a request body may have (a PodSpec needs about 15 levels)."""


class NestingTooDeepError(BadRequestError):
    """The body nests objects or lists deeper than :data:`MAX_DEPTH`."""


def check_depth(value: Any, *, limit: int = MAX_DEPTH) -> None:
    """Refuse bodies nested deeper than ``limit``, naming where (iterative: no recursion)."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(value, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            where = ".".join(path[:2]) or "<root>"
            raise NestingTooDeepError(f'the request body is nested too deeply at "{where}": '
                                      f"more than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1, (*path, str(k)) if len(path) < 2 else path) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, depth + 1, path) for v in node)


def duplicate_fields(body: bytes) -> list[str]:
    """Object keys that appear twice in one JSON object (Kubernetes' strict decoding reports them)."""
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in found:
                found.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return []
    return found


def media_type(content_type: str | None) -> str:
    """``application/json`` from ``application/json; charset=utf-8``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(body: bytes) -> Any:
    """A YAML body; one that is a JSON object (what kubectl sends as an apply patch) is read as
    JSON, which YAML includes, at JSON's speed (Istio's CRD bundle: 4 s of YAML scanning -> 30 ms)."""
    if body.lstrip()[:1] == b"{":
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return yaml.load(body.decode("utf-8"), Loader=_YAML_LOADER)  # a safe loader (C or Python)


def parse_body(body: bytes, content_type: str | None) -> Any:
    """Decode a request body by its media type; errors are 400 / 415 Status errors."""
    mt = media_type(content_type)
    if mt == PROTOBUF_TYPE:
        from machinery.protobuf import decode_object

        return decode_object(body)
    if mt in YAML_TYPES:
        try:
            value = _load_yaml(body)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"error decoding YAML: {exc}") from exc
        except RecursionError:
            raise NestingTooDeepError("error decoding YAML: the document is nested too deeply") from None
        check_depth(value)
        return value
    if mt in JSON_TYPES or mt in PATCH_TYPES or mt.endswith("+json"):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"error decoding JSON: {exc}") from exc
        check_depth(value)
        return value
    raise UnsupportedMediaTypeError(f'the body of the request was in an unknown format - accepted media types '
                                    f'include: application/json, application/yaml, {PROTOBUF_TYPE}; got "{mt}"')


def parse_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    if not body.strip():
        raise BadRequestError("the request body is empty; an object is required")
    value = parse_body(body, content_type)
    if not isinstance(value, dict):
        raise BadRequestError(f"the request body must be a JSON object, not {type(value).__name__}")
    return value
