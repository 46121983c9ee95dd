"""The options of a write, read as Kubernetes reads them: meta/v1 Create/Update/Patch and DeleteOptions.

:class:`WriteOptions` carries the query parameters that create, update and patch share
(``dryRun``, ``fieldValidation``, ``fieldManager``); :class:`DeleteOptions` the parts of a
meta/v1 DeleteOptions body we honour, with Kubernetes' errors for a malformed one (400 for a
wrong type, 422 for an unsupported value). The ``resourceVersion`` of a written object is read
here too, as Kubernetes' versioner parses it: :func:`update_precondition` is the version an
update must match. Built by the handlers (:mod:`apiserver.handlers`,
:mod:`apiserver.subresources`) and consumed by :class:`apiserver.registry.Registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from machinery.errors import BadRequestError, StatusCause, invalid

__all__ = ["DeleteOptions", "WriteOptions", "resource_version_number", "update_precondition"]


@dataclass(frozen=True)
class WriteOptions:
    """Query parameters shared by create/update/patch."""

    dry_run: bool = False
    field_validation: str = "Strict"
    field_manager: str = ""


@dataclass(frozen=True)
class DeleteOptions:
    """The parts of meta/v1 DeleteOptions we honour."""

    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: bool = False

    @staticmethod
    def from_dict(body: Any, *, dry_run: bool = False) -> DeleteOptions:
        """Read a meta/v1 DeleteOptions body: 400 for wrong types, 422 for unsupported values."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequestError("DeleteOptions must be a JSON object")
        pre = body.get("preconditions") or {}
        if not isinstance(pre, dict):
            raise BadRequestError("json: cannot unmarshal string into Go struct field DeleteOptions.preconditions "
                                  "of type v1.Preconditions")
        grace = body.get("gracePeriodSeconds")
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
            raise BadRequestError("json: cannot unmarshal value into Go struct field "
                                  "DeleteOptions.gracePeriodSeconds of type int64")
        policy = body.get("propagationPolicy")
        if policy is None and body.get("orphanDependents") is True:
            policy = "Orphan"
        causes = []
        if policy not in (None, "Orphan", "Background", "Foreground"):
            causes.append(StatusCause("propagationPolicy", f'Unsupported value: "{policy}": supported values: '
                                      '"Foreground", "Background", "Orphan"', "FieldValueNotSupported"))
        body_dry_run = body.get("dryRun") or []
        if not isinstance(body_dry_run, list):
            raise BadRequestError("json: cannot unmarshal value into Go struct field DeleteOptions.dryRun "
                                  "of type []string")
        causes.extend(StatusCause("dryRun", f'Unsupported value: "{v}": supported values: "All"',
                                  "FieldValueNotSupported") for v in body_dry_run if v != "All")
        if causes:
            raise invalid("DeleteOptions", "", causes, group="meta.k8s.io")
        return DeleteOptions(
            grace_period_seconds=grace,
            propagation_policy=policy,
            precondition_uid=pre.get("uid"),
            precondition_resource_version=pre.get("resourceVersion"),
            dry_run=dry_run or bool(body_dry_run),
        )


_MAX_UINT64 = 2**64 - 1


def resource_version_number(value: object) -> int | None:
    """The resourceVersion as Kubernetes' versioner parses it: a uint64, else None (not a number)."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number <= _MAX_UINT64 else None


def update_precondition(value: object) -> str | None:
    """The resourceVersion an update must match: none for ``""`` and ``"0"`` (an unconditional update)."""
    if value is None or value == "" or resource_version_number(value) == 0:
        return None
    return str(value)
