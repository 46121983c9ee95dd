"""Object <-> stored bytes, and request bodies -> objects.

Objects are stored as JSON without ``metadata.resourceVersion``: the store's ``mod_revision``
is the resourceVersion and is put back on every read (as Kubernetes does over etcd).
Request bodies may be JSON, YAML or Kubernetes protobuf (kubectl >= 1.32 imperative
``create``); a missing Content-Type means JSON (the Python client sends none).
"""

from __future__ import annotations

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


def encode(obj: dict[str, Any]) -> bytes:
    """Stored form: JSON with no resourceVersion."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        rv = meta.pop("resourceVersion")
        try:
            return orjson.dumps(obj)
        finally:
            meta["resourceVersion"] = rv
    return orjson.dumps(obj)


def decode(kv: KeyValue) -> dict[str, Any]:
    """A stored value with its resourceVersion set from the revision."""
    obj: dict[str, Any] = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
    return obj


def decode_value(value: bytes, revision: int) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def media_type(content_type: str | None) -> str:
    """``application/json`` from ``application/json; charset=utf-8``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None) -> Any:
    """Decode a request body by its media type; errors are 400 / 415 Status errors."""
    mt = media_type(content_type)
    if mt == PROTOBUF_TYPE:
        from machinery.protobuf import decode_object

        return decode_object(body)
    if mt in YAML_TYPES:
        try:
            return yaml.safe_load(body.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"error decoding YAML: {exc}") from exc
    if mt in JSON_TYPES or mt in PATCH_TYPES or mt.endswith("+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"error decoding JSON: {exc}") from exc
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
