"""The one error hierarchy of kubelab, and its mapping to Kubernetes ``Status`` objects.

Every failure that reaches an API client is an :class:`ApiError` subclass carrying the HTTP
code and the ``Status.reason`` Kubernetes uses for it. The apiserver's error middleware turns
any ``ApiError`` into ``Status`` JSON with :meth:`ApiError.to_status`; clients turn a ``Status``
back into the matching class with :func:`error_from_status`.

    ApiError (500 InternalError)
    ├── BadRequestError          400 BadRequest
    │   └── DecodingError        400 BadRequest (a field of the wrong type)
    ├── UnauthorizedError        401 Unauthorized
    ├── ForbiddenError           403 Forbidden
    ├── NotFoundError            404 NotFound
    ├── MethodNotAllowedError    405 MethodNotAllowed
    ├── NotAcceptableError       406 NotAcceptable
    ├── AlreadyExistsError       409 AlreadyExists
    ├── ConflictError            409 Conflict
    ├── GoneError                410 Expired
    ├── RequestEntityTooLargeError 413 RequestEntityTooLarge
    ├── UnsupportedMediaTypeError  415 UnsupportedMediaType
    ├── InvalidError             422 Invalid (with field causes)
    ├── TooManyRequestsError     429 TooManyRequests
    ├── ServiceUnavailableError  503 ServiceUnavailable
    └── TimeoutError_            504 Timeout
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class StatusCause:
    """One reason a request failed, usually naming a field (``spec.replicas``)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        """Kubernetes omits an empty ``field`` (a cause about the request rather than one field)."""
        cause = {"reason": self.reason, "message": self.message}
        if self.field:
            cause["field"] = self.field
        return cause


class ApiError(Exception):
    """Base of every error that becomes a Kubernetes ``Status``."""

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        group: str = "",
        kind: str = "",
        causes: tuple[StatusCause, ...] | list[StatusCause] = (),
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = tuple(causes)
        self.retry_after_seconds = retry_after_seconds

    def to_status(self) -> dict[str, Any]:
        """The ``Status`` object Kubernetes would answer with, its keys in kube-apiserver's order."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_seconds is not None:
            details["retryAfterSeconds"] = self.retry_after_seconds
        if details:
            status["details"] = details
        status["code"] = self.code
        return status


class BadRequestError(ApiError):
    code = 400
    reason = "BadRequest"


class DecodingError(BadRequestError):
    """The body is well-formed but does not decode as the kind (a type error naming a field)."""


class UnauthorizedError(ApiError):
    code = 401
    reason = "Unauthorized"


class ForbiddenError(ApiError):
    code = 403
    reason = "Forbidden"


class NotFoundError(ApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowedError(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptableError(ApiError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExistsError(ApiError):
    code = 409
    reason = "AlreadyExists"


class ConflictError(ApiError):
    code = 409
    reason = "Conflict"


class GoneError(ApiError):
    code = 410
    reason = "Expired"


class RequestEntityTooLargeError(ApiError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaTypeError(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class InvalidError(ApiError):
    code = 422
    reason = "Invalid"


class TooManyRequestsError(ApiError):
    code = 429
    reason = "TooManyRequests"


class ServiceUnavailableError(ApiError):
    code = 503
    reason = "ServiceUnavailable"


class TimeoutError_(ApiError):
    """504 Timeout (named with a trailing underscore to keep the builtin visible)."""

    code = 504
    reason = "Timeout"


_BY_REASON: dict[str, type[ApiError]] = {
    cls.reason: cls
    for cls in (
        ApiError,
        BadRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        MethodNotAllowedError,
        NotAcceptableError,
        AlreadyExistsError,
        ConflictError,
        GoneError,
        RequestEntityTooLargeError,
        UnsupportedMediaTypeError,
        InvalidError,
        TooManyRequestsError,
        ServiceUnavailableError,
        TimeoutError_,
    )
}


def invalid(kind: str, name: str, causes: list[StatusCause], *, group: str = "") -> InvalidError:
    """A 422 worded as Kubernetes does: ``Deployment.apps "web" is invalid: spec.replicas: ...``."""
    qualified = f"{kind}.{group}" if group else kind
    detail = "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
    message = f'{qualified} "{name}" is invalid'
    if detail:
        message += f": {detail}"
    return InvalidError(message, name=name, group=group, kind=kind, causes=causes)


def error_from_status(status: dict[str, Any], *, http_code: int | None = None) -> ApiError:
    """Rebuild the typed error a ``Status`` describes (used by the REST client)."""
    reason = str(status.get("reason") or "")
    code = int(status.get("code") or http_code or 500)
    cls = _BY_REASON.get(reason)
    if cls is None:
        cls = next((c for c in _BY_REASON.values() if c.code == code and c is not ApiError), ApiError)
    details = status.get("details") or {}
    causes = [
        StatusCause(field=str(c.get("field", "")), message=str(c.get("message", "")),
                    reason=str(c.get("reason", "")))
        for c in details.get("causes") or []
    ]
    return cls(
        str(status.get("message") or reason),
        name=str(details.get("name", "")),
        group=str(details.get("group", "")),
        kind=str(details.get("kind", "")),
        causes=causes,
    )
