"""PATCH bodies applied to a live object: JSON patch, merge patch, strategic merge patch and
server-side apply (``application/apply-patch+yaml``).

Server-side apply here is a strategic merge of the applied configuration into the live object
(lists merged by their Kubernetes merge keys). Field ownership (managedFields) and apply
conflicts are not tracked yet: ``force`` is accepted and has no effect.
"""

from __future__ import annotations

from typing import Any

from apiserver.codec import NestingTooDeepError, media_type, parse_body
from machinery.errors import (
    BadRequestError,
    RequestEntityTooLargeError,
    StatusCause,
    UnsupportedMediaTypeError,
    invalid,
)
from machinery.patch import json_merge_patch, json_patch, strategic_merge_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
MAX_JSON_PATCH_OPERATIONS = 10_000
JSON_PATCH_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def patch_type(content_type: str | None) -> str:
    mt = media_type(content_type)
    if mt not in PATCH_TYPES:
        raise UnsupportedMediaTypeError(
            f'the body of the request was in an unknown format - accepted media types include: '
            f'{", ".join(PATCH_TYPES)}')
    return mt


def parse_patch(body: bytes, content_type: str) -> Any:
    if not body.strip():
        raise BadRequestError("the request body is empty; a patch is required")
    try:
        value = parse_body(body, content_type)
    except NestingTooDeepError as exc:
        # Kubernetes reports an unusable patch document as 422 naming the patch.
        raise invalid("", "", [StatusCause("patch", exc.message)]) from None
    if content_type == JSON_PATCH:
        if not isinstance(value, list):
            raise BadRequestError("json patch must be a JSON array of operations")
        if len(value) > MAX_JSON_PATCH_OPERATIONS:
            raise RequestEntityTooLargeError(f"The allowed maximum operations in a JSON patch is "
                                             f"{MAX_JSON_PATCH_OPERATIONS}, got {len(value)}")
        for op in value:
            if not isinstance(op, dict):
                raise BadRequestError("json patch operations must be JSON objects")
            if op.get("op") not in JSON_PATCH_OPS:
                raise invalid("", "", [StatusCause("patch", f"Unexpected kind: {op.get('op', 'unknown')}")])
    elif not isinstance(value, dict):
        raise BadRequestError(f"{content_type} body must be a JSON object")
    return value


def apply_patch(live: dict[str, Any], patch: Any, content_type: str, *, kind: str) -> dict[str, Any]:
    """The object after the patch (the live object is not modified)."""
    if content_type == JSON_PATCH:
        result = json_patch(live, patch)
    elif content_type == MERGE_PATCH:
        result = json_merge_patch(live, patch)
    else:
        result = strategic_merge_patch(live, patch, kind=kind)
    if not isinstance(result, dict):
        raise BadRequestError("the patch must leave a JSON object")
    return result
