"""Base model and scalar types shared by every kubelab API type.

Owns :class:`K8sModel` (strict, ``extra="forbid"`` pydantic model whose attribute names are the
camelCase JSON names Kubernetes uses) and the Kubernetes scalar types: ``Quantity``,
``IntOrString``, ``Time``/``MicroTime``, ``Int32``/``Int64`` and base64 byte strings. Every type
carries a :class:`GoType` marker so decoding errors can name the Go type as Kubernetes does.
The type modules (``meta``, ``container``, ``pod``, ...) build on this; ``decoding`` and ``schema``
read the markers. Strict mode mirrors Go's ``encoding/json``: no string-to-int coercion.
"""

import base64
import binascii
import re
from typing import Annotated, Any, ClassVar

from annotated_types import Interval
from pydantic import BaseModel, ConfigDict, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_MESSAGE = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


class GoType:
    """Annotation marker: the Go type name Kubernetes reports for this field in decoding errors."""

    def __init__(self, name: str) -> None:
        self.name = name


class K8sModel(BaseModel):
    """Base of all API types: strict like Go's JSON decoder, unknown fields are errors."""

    # defer_build: each model builds its validator on first use, not when the apiserver starts
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, defer_build=True)

    k8s_prefix: ClassVar[str] = "io.k8s.api.core.v1"
    """Prefix of this type's OpenAPI definition name (``<prefix>.<ClassName>``)."""
    k8s_required: ClassVar[tuple[str, ...]] = ()
    """Fields Kubernetes marks required in OpenAPI (kept optional here so validation reports them)."""
    k8s_gvk: ClassVar[tuple[str, str, str] | None] = None
    """(group, version, kind) for top-level kinds."""


def merge_key(key: str | None, strategy: str = "merge") -> dict[str, Any]:
    """``json_schema_extra`` for a list with Kubernetes strategic-merge-patch metadata."""
    extra: dict[str, Any] = {"x-kubernetes-patch-strategy": strategy}
    if key:
        extra["x-kubernetes-patch-merge-key"] = key
    return extra


def _decode_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("k8s_decode", "{message}", {"message": message})


def _type_error() -> PydanticCustomError:
    return PydanticCustomError("k8s_type", "wrong JSON type")


def _quantity(value: object) -> str:
    if isinstance(value, bool):
        raise _decode_error(QUANTITY_MESSAGE)
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str) and QUANTITY_RE.match(value.strip()):
        return value
    raise _decode_error(QUANTITY_MESSAGE)


def _int_or_string(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _type_error()
    return value


def _time(value: object) -> str:
    if not isinstance(value, str):
        raise _type_error()
    if not _RFC3339_RE.match(value):
        raise _decode_error(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    return value


def _base64(value: object) -> str:
    """Standard base64, re-encoded. Go's decoder (``encoding/json`` for ``[]byte``) skips ``\r``
    and ``\n`` anywhere, so wrapped output of ``base64`` tools decodes; the object keeps the
    canonical unwrapped form, as Kubernetes re-encodes the bytes it decoded."""
    if not isinstance(value, str):
        raise _type_error()
    try:
        decoded = base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _decode_error(f"illegal base64 data: {exc}") from None
    return base64.b64encode(decoded).decode()


Int32 = Annotated[int, GoType("int32"), Interval(ge=-(2**31), le=2**31 - 1),
                  WithJsonSchema({"type": "integer", "format": "int32"})]
Int64 = Annotated[int, GoType("int64"), Interval(ge=-(2**63), le=2**63 - 1),
                  WithJsonSchema({"type": "integer", "format": "int64"})]
Quantity = Annotated[
    str,
    PlainValidator(_quantity),
    GoType("resource.Quantity"),
    WithJsonSchema({"x-k8s-ref": "io.k8s.apimachinery.pkg.api.resource.Quantity"}),
]
IntOrString = Annotated[
    int | str,
    PlainValidator(_int_or_string),
    GoType("intstr.IntOrString"),
    WithJsonSchema({"x-k8s-ref": "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}),
]
Time = Annotated[
    str,
    PlainValidator(_time),
    GoType("string"),
    WithJsonSchema({"x-k8s-ref": "io.k8s.apimachinery.pkg.apis.meta.v1.Time"}),
]
MicroTime = Annotated[
    str,
    PlainValidator(_time),
    GoType("string"),
    WithJsonSchema({"x-k8s-ref": "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"}),
]
Bytes = Annotated[
    str, PlainValidator(_base64), GoType("[]uint8"), WithJsonSchema({"type": "string", "format": "byte"})
]

SCALAR_SCHEMAS: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "type": "string",
        "description": "A fixed-point number with an optional SI or binary suffix, e.g. 100m, 1.5Gi, 2.",
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "type": "string",
        "format": "int-or-string",
        "x-kubernetes-int-or-string": True,
        "description": "Either an integer or a string (for example a port number or a port name, 3 or 25%).",
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {
        "type": "string",
        "format": "date-time",
        "description": "A timestamp in RFC 3339 form with second precision.",
    },
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": {
        "type": "string",
        "format": "date-time",
        "description": "A timestamp in RFC 3339 form with microsecond precision.",
    },
}
