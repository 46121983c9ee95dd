"""kubelab's API types (pydantic v2) and what the apiserver does with them on every write.

Public API, called by the apiserver's handlers:

- :func:`prepare` decodes a JSON object like Kubernetes' strict decoder (unknown fields per
  ``fieldValidation``, type errors as 400s) and applies Kubernetes' defaults;
- :func:`validate` runs Kubernetes' create/update validation and raises one 422 listing every cause;
- :func:`openapi_schemas` returns OpenAPI v3 component schemas for every served kind;
- :func:`model_for` returns the pydantic model of a kind.

Objects travel as plain JSON dicts; the models are only used to check and clean them.
"""

from typing import Any

import pydantic

from machinery.api import defaults
from machinery.api.decoding import decode
from machinery.api.registry import lookup
from machinery.api.schema import openapi_schemas
from machinery.api.validation import validate_object
from machinery.errors import BadRequestError

FIELD_VALIDATION = ("Strict", "Warn", "Ignore")

__all__ = ["model_for", "openapi_schemas", "prepare", "validate"]


def model_for(api_version: str, kind: str) -> type[pydantic.BaseModel] | None:
    """The pydantic model of ``kind`` in ``api_version``, or None when not served."""
    return lookup(api_version, kind)


def prepare(obj: dict[str, Any], *, api_version: str, kind: str,
            field_validation: str = "Strict") -> tuple[dict[str, Any], list[str]]:
    """Decode ``obj`` as ``kind`` and apply defaults; returns (new object, unknown-field warnings).

    Raises BadRequestError for type errors and, under Strict, for unknown fields. Never mutates
    ``obj``; the result omits unset fields and carries ``apiVersion``/``kind``.
    """
    if field_validation not in FIELD_VALIDATION:
        raise BadRequestError(
            f'fieldValidation parameter unsupported: "{field_validation}" '
            f'(supported: "Ignore", "Warn", "Strict")')
    model = lookup(api_version, kind)
    if model is None:
        raise BadRequestError(f'no kind "{kind}" is registered for version "{api_version}"')
    if not isinstance(obj, dict):
        raise BadRequestError(f"json: cannot unmarshal non-object into Go value of type v1.{kind}", kind=kind)
    decoded, warnings = decode(obj, model=model, api_version=api_version, kind=kind,
                               field_validation=field_validation)
    decoded.pop("apiVersion", None)
    decoded.pop("kind", None)
    result = {"apiVersion": api_version, "kind": kind, **decoded}
    defaults.apply(kind, result)
    return result, warnings


def validate(obj: dict[str, Any], *, old: dict[str, Any] | None = None) -> None:
    """Kubernetes validation of ``obj`` on create (``old`` None) or update; raises InvalidError."""
    validate_object(obj, old)
